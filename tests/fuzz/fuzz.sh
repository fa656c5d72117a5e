#!/usr/bin/env bash
# tests/fuzz/fuzz.sh — build the libFuzzer targets of the code that reads client-written bytes
# (fuzz-validate, fuzz-ereq, fuzz-admin, fuzz-handshake) with clang + ASan + UBSan, and run them.
#
#   tests/fuzz/fuzz.sh BUILDDIR smoke SECONDS       build all, run each SECONDS on a scratch copy
#                                                   of its committed corpus (meson test fuzz-smoke)
#   tests/fuzz/fuzz.sh BUILDDIR run TARGET ARGS...  build all, run TARGET with libFuzzer ARGS
#                                                   (new inputs go to BUILDDIR/fuzz/corpus-TARGET)
# BUILDDIR is a configured meson build directory (its config.h is used). Exits 77 (skip) when
# clang or libFuzzer is missing. Everything the targets link is compiled here with clang, so the
# fuzzer sees coverage of the daemon's code, not only of the target file.
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "$1" && pwd)
mode=$2
shift 2
out=$build/fuzz
CLANG=${CLANG:-clang}
command -v "$CLANG" >/dev/null || { echo "no clang: skipped"; exit 77; }
echo 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n){(void)d;(void)n;return 0;}' \
  >"$build/fuzz-probe.c"
"$CLANG" -fsanitize=fuzzer "$build/fuzz-probe.c" -o "$build/fuzz-probe" 2>/dev/null ||
  { echo "clang without libFuzzer: skipped"; exit 77; }
mkdir -p "$out/obj"
# objects are reused between runs; a header newer than the last build invalidates them all
# (struct layouts must agree between the target and the code it calls)
if [ -f "$out/obj/.stamp" ] && [ -n "$(cd "$src" && find include shm client daemon kernels \
     tests/fuzz -name '*.h' -newer "$out/obj/.stamp" -print -quit)" ]; then
  rm -f "$out"/obj/*.o
fi

cflags=(-std=c17 -D_GNU_SOURCE -g -O1 -I"$build" -I"$src" -I"$src/include"
  -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
  -Wno-unused-command-line-argument)
libs=(-ljansson -lm -lpthread -lcrypto)   # libcrypto: the vision key (daemon/engine/vcache.c)
grep -q 'VLM_HAVE_LIBURING 1' "$build/config.h" && libs+=(-luring)
grep -q 'VLM_HAVE_MICROHTTPD 1' "$build/config.h" && libs+=(-lmicrohttpd)

# the daemon below vlmd.c and what it stands on (CPU kernels without their x86 files, whose
# per-function targets are GCC pragmas)
deps=$(cd "$src" && ls shm/*.c daemon/model/*.c daemon/io/*.c daemon/engine/*.c daemon/ops/*.c \
  kernels/backend.c kernels/validate.c kernels/ref/ref_backend.c kernels/cpu/cpu_backend.c \
  kernels/cpu/threadpool.c kernels/cpu/kern_generic.c kernels/cpu/cpu_vision.c kernels/cpu/cpu_quant.c)
objs=()
for f in $deps; do
  o=$out/obj/${f//\//_}.o
  if [ ! -f "$o" ] || [ "$src/$f" -nt "$o" ] || [ "$build/config.h" -nt "$o" ]; then
    "$CLANG" "${cflags[@]}" -c "$src/$f" -o "$o"
  fi
  objs+=("$o")
done
rm -f "$out/libfuzzdeps.a"
ar rcs "$out/libfuzzdeps.a" "${objs[@]}"
touch "$out/obj/.stamp"

targets=(validate ereq admin handshake)
for t in "${targets[@]}"; do
  "$CLANG" "${cflags[@]}" -fsanitize=fuzzer "$src/tests/fuzz/fuzz-$t.c" "$out/libfuzzdeps.a" \
    "${libs[@]}" -o "$out/fuzz-$t"
done

case "$mode" in
  smoke)
    secs=${1:-10}
    for t in "${targets[@]}"; do
      scratch=$(mktemp -d)
      echo "== fuzz-$t: $secs s"
      "$out/fuzz-$t" -max_total_time="$secs" -max_len=8192 -artifact_prefix="$out/" "$scratch" \
        "$src/tests/fuzz/corpus-$t" 2>&1 | tail -n 3
      rc=${PIPESTATUS[0]}
      rm -rf "$scratch"
      [ "$rc" -eq 0 ] || { echo "fuzz-$t failed ($rc)"; exit 1; }
    done ;;
  run)
    t=$1
    shift
    mkdir -p "$out/corpus-$t"
    exec "$out/fuzz-$t" -artifact_prefix="$out/" "$@" "$out/corpus-$t" "$src/tests/fuzz/corpus-$t" ;;
  *) echo "usage: fuzz.sh BUILDDIR smoke SECONDS | run TARGET ARGS..." >&2; exit 2 ;;
esac
