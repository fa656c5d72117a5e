#!/usr/bin/env bash
# Build the parser fuzzers (safetensors header, config.json) with clang's libFuzzer + ASan +
# UBSan and run each for SECONDS.
#   tests/model/fuzz.sh [SECONDS]        (default 60; new inputs go to $FUZZ_OUT/corpus*,
#                                         default build-fuzz/; suite 'fuzz' runs it for 10 s)
# Exits 77 (skip) without clang or libFuzzer.
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-60}
out=${FUZZ_OUT:-build-fuzz}
command -v clang >/dev/null || { echo "no clang: skipped"; exit 77; }
mkdir -p "$out/corpus"
clang -std=c17 -D_GNU_SOURCE -g -O1 -I. -Iinclude \
  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  tests/model/fuzz-safetensors.c daemon/model/safetensors.c daemon/model/errmsg.c -ljansson -o "$out/fuzz-safetensors"
"$out/fuzz-safetensors" -max_total_time="$secs" -max_len=4096 -dict=tests/model/safetensors.dict \
  "$out/corpus" tests/model/fuzz-corpus
mkdir -p "$out/corpus-config"
clang -std=c17 -D_GNU_SOURCE -g -O1 -I. -Iinclude \
  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  tests/model/fuzz-model-config.c daemon/model/model_config.c daemon/model/errmsg.c -ljansson -o "$out/fuzz-model-config"
"$out/fuzz-model-config" -max_total_time="$secs" -max_len=4096 "$out/corpus-config" \
  tests/model/fuzz-corpus-config
