#!/usr/bin/env bash
# The long offline fuzz run behind the figures in docs/BENCHMARKS.md ("Fuzzing and soak"):
# every target (or the ones named) for RUNS executions (default 10 million), one after
# the other, each from its committed corpus plus the PROTOCOL.md seeds, growing the
# committed corpus. Prints one Markdown table row per target; the full libFuzzer logs go
# to fuzz/target/long-run/<target>.log. Minimise the corpora afterwards with
# `cargo +nightly fuzz cmin <target>` before committing them.
#
#     fuzz/long_run.sh                       # all targets, 10 M executions each
#     RUNS=1000000 fuzz/long_run.sh session  # one target, 1 M
#     SANITIZER=none fuzz/long_run.sh device_server
#
# frame_decoder runs the checked build (CRC verified), as in .ci/run. Targets are built
# with AddressSanitizer, as in .ci/run, unless SANITIZER=none: about three times the
# executions per second for the slow targets, whose code (protocol and device crates) has
# no `unsafe`; that build goes to its own target dir so the two do not rebuild each other.
set -euo pipefail
cd "$(dirname "$0")"

runs="${RUNS:-10000000}"
logs=target/long-run
mkdir -p "$logs"
python3 seed_corpora.py >/dev/null

targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo +nightly fuzz list)

echo "| target | execs | wall time | execs/s | coverage (edges) | corpus entries |"
echo "|---|---:|---:|---:|---:|---:|"
for t in "${targets[@]}"; do
  san=() dir=target
  [ "${SANITIZER:-address}" = none ] && san=(-s none) dir=target/nosan
  flags=("${san[@]}" --target-dir "$dir")
  [ "$t" = frame_decoder ] && flags=("${san[@]}" --no-cfg-fuzzing --no-default-features --target-dir "$dir/checked")
  mkdir -p "corpus/$t" "target/seeds/$t"
  if ! cargo +nightly fuzz run "${flags[@]}" "$t" "corpus/$t" "target/seeds/$t" -- \
    -runs="$runs" -print_final_stats=1 >"$logs/$t.log" 2>&1; then
    tail -n 40 "$logs/$t.log"
    echo "fuzz target $t failed; the input is in fuzz/artifacts/$t" >&2
    exit 1
  fi
  secs=$(grep -oE '^Done [0-9]+ runs in [0-9]+ second' "$logs/$t.log" | awk '{print $5}')
  stat() { grep -E "^stat::$1:" "$logs/$t.log" | tail -n 1 | awk '{print $2}'; }
  execs=$(stat number_of_executed_units)
  cov=$(grep -oE 'cov: [0-9]+' "$logs/$t.log" | tail -n 1 | awk '{print $2}')
  printf '| `%s` | %s | %d min %02d s | %s | %s | %s |\n' "$t" "$execs" $((secs / 60)) $((secs % 60)) \
    "$((execs / (secs > 0 ? secs : 1)))" "${cov:-?}" "$(find "corpus/$t" -type f | wc -l)"
done
