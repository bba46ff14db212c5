#!/usr/bin/env bash
# Run every libFuzzer target for SECONDS each (default 60).
#
# Configures build-fuzz with clang and -Dfuzz=true (tests off: cmocka is not needed),
# copies each target's seed corpus (tests/fuzz/corpus/<name>/) into a scratch corpus
# under build-fuzz/corpus/<name>/ so the checked-in seeds stay small, and saves any
# crasher under build-fuzz/crashes/<name>/. Add a crasher to the seed corpus once
# fixed: the normal build replays it as the unit test fuzz-<name>-corpus.
# Prints the execution count per target; exits non-zero if a target crashed.
# FUZZ_TARGETS="yaml kubeconfig" limits the run to those targets.
set -uo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
max_len=${FUZZ_MAX_LEN:-65536}
dir=build-fuzz

if [ -d "$dir/meson-private" ]; then
  meson configure "$dir" -Dfuzz=true -Dtests=false >/dev/null || exit 1
else
  CC=clang meson setup "$dir" -Dfuzz=true -Dtests=false -Dbuildtype=debugoptimized \
    >/dev/null || exit 1
fi
ninja -C "$dir" || exit 1

# The targets are whatever tests/fuzz/meson.build's fuzz_targets list built.
targets=()
for bin in "$dir"/tests/fuzz/fuzz-*; do
  name=${bin##*/fuzz-}
  [ -x "$bin" ] && [ -f "$bin" ] && [[ $name != *-replay ]] || continue
  if [ -n "${FUZZ_TARGETS:-}" ] && [[ " $FUZZ_TARGETS " != *" $name "* ]]; then continue; fi
  targets+=("$name")
done
[ ${#targets[@]} -gt 0 ] || { echo "no fuzz targets built in $dir/tests/fuzz"; exit 1; }

status=0
summary=()
for t in "${targets[@]}"; do
  bin="$dir/tests/fuzz/fuzz-$t"
  corpus="$dir/corpus/$t"
  crashes="$dir/crashes/$t"
  mkdir -p "$corpus" "$crashes"
  cp -n tests/fuzz/corpus/"$t"/* "$corpus"/ 2>/dev/null || true
  log="$dir/fuzz-$t.log"
  echo "== fuzz-$t for ${seconds}s (log: $log)"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "$bin" -max_total_time="$seconds" -max_len="$max_len" -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 -artifact_prefix="$crashes/" "$corpus" >"$log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  [ -n "$execs" ] || execs=$(grep -o 'DONE *[0-9]*' "$log" | grep -o '[0-9]*' | tail -1)
  if [ $rc -ne 0 ]; then
    status=1
    summary+=("fuzz-$t: CRASH after ${execs:-?} execs, see $log and $crashes/")
  else
    summary+=("fuzz-$t: ${execs:-?} execs in ${seconds}s, corpus $(ls "$corpus" | wc -l) files, no crash")
  fi
done
printf '%s\n' "${summary[@]}"
exit $status
