#!/usr/bin/env bash
# Flash by crate and the largest symbols of a firmware ELF (docs/BENCHMARKS.md,
# "Firmware footprint"). Code and constants (.text/.rodata symbols) are attributed to the
# crate of the symbol's path (an `<A as B>::f` to A's crate); what LTO inlined counts
# where it landed, so the firmware's main task and `Server::execute` hold much of the
# pump core. Anonymous constants and linker symbols are listed by name.
#
#   device/firmware/tools/by-crate.sh ELF [TOP_SYMBOLS]
set -euo pipefail
elf=$1 top=${2:-20}
host=$(rustc -vV | sed -n 's/^host: //p')
nm="$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-nm"
"$nm" -S -C --radix=d --size-sort "$elf" | awk '$3 ~ /^[tTrR]$/ {
  sz = $2 + 0; $1 = ""; $2 = ""; $3 = ""; n = substr($0, 4)
  gsub(/\$LT\$/, "<", n); gsub(/\$GT\$/, ">", n); gsub(/\$u20\$/, " ", n)
  gsub(/\$RF\$/, "\\&", n); gsub(/\.\./, "::", n); gsub(/^_</, "<", n)
  while (n ~ /^[<&]|^mut |^impl /) sub(/^[<&]|^mut |^impl /, "", n)
  split(n, a, "::"); c = a[1]; sub(/[ <>].*/, "", c)
  if (index(n, "::") == 0) c = "(no path: " c ")"
  tot[c] += sz; all += sz
} END { for (c in tot) printf "%8d %s\n", tot[c], c; printf "%8d TOTAL\n", all }' | sort -rn
echo "largest symbols:"
"$nm" -S -C --radix=d --size-sort "$elf" | awk '$3 ~ /^[tTrR]$/ { printf "%8d %s\n", $2, $4 }' |
  sed 's/\$LT\$/</g; s/\$GT\$/>/g; s/\$u20\$/ /g; s/\.\./::/g; s/\$C\$/,/g; s/::h[0-9a-f]\{16\}$//' |
  tail -n "$top" | sort -rn
