#!/usr/bin/env bash
# Stack frame of each function of a Cortex-M firmware ELF, largest first: the bytes its
# prologue pushes (push/vpush) plus its `sub sp, #N`. Not a call graph: the deepest
# path is a sum along calls (docs/BENCHMARKS.md, "Stack").
#
#   device/firmware/tools/frames.sh ELF [COUNT]
set -euo pipefail
elf=$1 count=${2:-20}
host=$(rustc -vV | sed -n 's/^host: //p')
objdump="$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-objdump"
"$objdump" -d --no-show-raw-insn -C "$elf" | awk '
  /^[0-9a-f]+ <.*>:$/ { if (fn != "") print fr, fn; fn = $2; fr = 0; next }
  /\tpush(\.w)?\t\{/ {
    s = $0; sub(/.*\{/, "", s); sub(/\}.*/, "", s); k = split(s, r, ",")
    for (i = 1; i <= k; i++) {
      if (r[i] ~ /-/) { split(r[i], q, "-"); gsub(/[^0-9]/, "", q[1]); gsub(/[^0-9]/, "", q[2]); fr += 4 * (q[2] - q[1] + 1) }
      else fr += 4
    }
  }
  /\tvpush/ { s = $0; sub(/.*\{/, "", s); sub(/\}.*/, "", s); fr += 8 * split(s, r, ",") }
  /\tsub(\.w|w)?\tsp, (sp, )?#/ { s = $0; sub(/.*#/, "", s); fr += s + 0 }
  END { print fr, fn }' |
  sed 's/\$LT\$/</g; s/\$GT\$/>/g; s/\$u20\$/ /g; s/\.\./::/g; s/\$C\$/,/g; s/::h[0-9a-f]\{16\}>:$/>/' |
  sort -rn | head -n "$count"
