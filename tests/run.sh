#!/usr/bin/env bash
# The test command: configure (if needed), build, run every meson test suite, and print one
# closing line "N passed, N failed, N skipped".
#   tests/run.sh                          default build in build/
#   tests/run.sh --sanitize address,undefined [--suite S]...   sanitizer build in build-asan/
#   tests/run.sh --sanitize thread [--suite S]...              thread sanitizer build in build-tsan/
set -uo pipefail
cd "$(dirname "$0")/.."

builddir=build
sanitize=none
suites=()
while (($#)); do
  case "$1" in
    --sanitize) sanitize=$2; shift 2 ;;
    --suite) suites+=(--suite "$2"); shift 2 ;;
    --build) builddir=$2; shift 2 ;;
    *) echo "usage: tests/run.sh [--sanitize LIST] [--suite NAME]... [--build DIR]" >&2; exit 2 ;;
  esac
done
setup_args=()
case "$sanitize" in
  none) ;;
  thread) builddir=${builddir/#build/build-tsan}; setup_args+=(-Db_sanitize=thread -Dcuda=disabled) ;;
  *) builddir=${builddir/#build/build-asan}; setup_args+=(-Db_sanitize="$sanitize" -Db_lundef=false -Dcuda=disabled) ;;
esac

[ -d /usr/local/cuda/bin ] && export PATH=/usr/local/cuda/bin:$PATH
if [ ! -f "$builddir/build.ninja" ]; then
  meson setup "$builddir" "${setup_args[@]}" >"$builddir.setup.log" 2>&1 || { cat "$builddir.setup.log"; echo "0 passed, 1 failed"; exit 1; }
fi
if ! ninja -C "$builddir"; then
  echo "build failed"
  echo "0 passed, 1 failed"
  exit 1
fi
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}
meson test -C "$builddir" --print-errorlogs --num-processes 2 "${suites[@]}"
rc=$?
python3 - "$builddir/meson-logs/testlog.json" <<'PY'
import json, sys
passed = failed = skipped = 0
try:
    for line in open(sys.argv[1]):
        r = json.loads(line)["result"]
        if r in ("OK", "EXPECTEDFAIL"): passed += 1
        elif r == "SKIP": skipped += 1
        else: failed += 1
except FileNotFoundError:
    pass
print(f"{passed} passed, {failed} failed, {skipped} skipped")
PY
exit $rc
