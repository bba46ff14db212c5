#!/usr/bin/env bash
# The test command: installs what is missing, builds twice (a normal build that runs
# every suite, and an address+undefined sanitizer build that runs the unit suite), and
# ends with one line "N passed, N failed, N skipped" computed from meson's test logs.
# Exits non-zero on any failure. Options after -- go to 'meson test' (e.g. --suite unit).
set -uo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh || { echo "0 passed, 1 failed"; exit 1; }

werror=false
[ "${CI:-}" = "true" ] && werror=true
jobs=$(nproc 2>/dev/null || echo 2)
extra=("$@")

configure() { # dir, extra meson args...
  local dir=$1; shift
  if [ -d "$dir/meson-private" ]; then
    meson configure "$dir" -Dwerror=$werror "$@" >/dev/null
  else
    meson setup "$dir" -Dwerror=$werror "$@" >/dev/null
  fi
}

status=0
logs=()

echo "== build (normal)"
if configure build && ninja -C build; then
  echo "== test (normal: all suites)"
  meson test -C build --num-processes "$jobs" --print-errorlogs "${extra[@]}" || status=1
  logs+=(build/meson-logs/testlog.json)
else
  echo "build failed"; status=1
fi

echo "== build (sanitizers: address,undefined)"
if configure build-asan -Db_sanitize=address,undefined -Db_lundef=false \
     -Dbuildtype=debug && ninja -C build-asan; then
  echo "== test (sanitizers: unit suite)"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  LSAN_OPTIONS=suppressions="$PWD/tests/lsan.supp":print_suppressions=0 \
    meson test -C build-asan --suite unit --num-processes "$jobs" --print-errorlogs || status=1
  logs+=(build-asan/meson-logs/testlog.json)
else
  echo "sanitizer build failed"; status=1
fi

summary=$(python3 - "${logs[@]}" <<'PY'
import json, sys
p = f = s = 0
for path in sys.argv[1:]:
    try:
        with open(path) as fh:
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                r = json.loads(line).get("result", "")
                if r in ("OK", "EXPECTEDFAIL"):
                    p += 1
                elif r == "SKIP":
                    s += 1
                else:
                    f += 1
    except OSError:
        f += 1
print(f"{p} passed, {f} failed, {s} skipped")
PY
)
[ -n "$summary" ] || summary="0 passed, 1 failed"
case "$summary" in *" 0 failed"*) ;; *) status=1 ;; esac
[ $status -eq 0 ] || case "$summary" in *" 0 failed"*) summary="${summary/ 0 failed/ 1 failed}";; esac
echo "$summary"
exit $status
