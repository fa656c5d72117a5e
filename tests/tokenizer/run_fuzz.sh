#!/usr/bin/env bash
# Fuzzes the tokenizer.json loader with libFuzzer (clang) plus ASan/UBSan for SECONDS (default 60).
# usage: tests/tokenizer/run_fuzz.sh [SECONDS] [WORKDIR]
# New crashes land in WORKDIR (default /tmp/vlm-fuzz-tok); interesting small inputs found can be
# copied into tests/tokenizer/fuzz-corpus/ so the normal build replays them.
set -euo pipefail
secs=${1:-60}
work=${2:-/tmp/vlm-fuzz-tok}
root=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$work/corpus"
cp "$root"/tests/tokenizer/fuzz-corpus/* "$work/corpus/"
srcs=()
for m in utf8 bytelevel strmap bpe wcache normalize pretokenize added jscan tokenizer detok chat; do
  srcs+=("$root/client/$m.c")
done
clang -g -O1 -std=gnu17 -D_GNU_SOURCE -DVLM_LIBFUZZER -fsanitize=fuzzer,address,undefined \
  -fno-sanitize-recover=undefined -I"$root/include" -I"$root/client" \
  "$root/tests/tokenizer/fuzz-load.c" "${srcs[@]}" \
  $(pkg-config --cflags --libs jansson libpcre2-8 libutf8proc) -lpthread -o "$work/fuzz-load"
cd "$work"
./fuzz-load -max_total_time="$secs" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
  -print_final_stats=1 corpus
