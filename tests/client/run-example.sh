#!/bin/sh
# run-example.sh EXAMPLE VLMD VLM_MKMODEL — builds nothing: runs the README's C example
# (examples/generate.c, compiled by meson) against a real vlmd serving a tiny checkpoint and checks
# what it prints: the token ids (16 at most), then the finish line, which must count exactly the
# ids printed and give LENGTH (1) at 16 tokens or STOP (0, EOS) before.
# Also: without vlmd it fails with a clear message and a nonzero exit; a request vlmd refuses
# fails with vlmd's reason.
set -u
example=$1 vlmd=$2 mkmodel=$3
dir=$(mktemp -d /tmp/vlm-example-XXXXXX)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

VLM_SOCKET=$dir/none.sock "$example" 1 2 3 >"$dir/out" 2>"$dir/err" && fail "succeeded without vlmd"
grep -q "cannot connect to vlmd" "$dir/err" || fail "no clear message without vlmd: $(cat "$dir/err")"

"$mkmodel" --preset tiny --dtype f32 --seed 11 "$dir/model" >/dev/null || fail "vlm-mkmodel"
"$vlmd" --socket "$dir/s" --quiet --model "$dir/model" --threads 1 &
pid=$!
i=0
while [ ! -S "$dir/s" ] && [ $i -lt 500 ]; do sleep 0.01; i=$((i + 1)); done
[ -S "$dir/s" ] || fail "vlmd did not start"
VLM_SOCKET=$dir/s "$example" 1 5 17 33 71 >"$dir/out" 2>"$dir/err" || fail "example failed: $(cat "$dir/err")"
ntok=$(grep -c '^[0-9][0-9]*$' "$dir/out")
[ "$ntok" -ge 1 ] && [ "$ntok" -le 16 ] || fail "$ntok token lines: $(cat "$dir/out")"
if [ "$ntok" -eq 16 ]; then reason=1; else reason=0; fi
grep -q "^finish: reason $reason, 5 prompt + $ntok generated tokens" "$dir/out" ||
  fail "finish line does not match $ntok tokens: $(tail -1 "$dir/out")"
# the ids are the vocabulary's (the tiny model has 256)
awk '/^[0-9]+$/ && $1 >= 256 { bad = 1 } END { exit bad }' "$dir/out" || fail "token id out of the vocabulary"
# a request vlmd refuses: the example prints vlmd's reason and fails
VLM_SOCKET=$dir/s "$example" 1 300 >"$dir/out" 2>"$dir/err" && fail "token 300 was accepted"
grep -q "^generate: vlmd: token 300 at 1 >= vocab size 256; error -EINVAL$" "$dir/err" ||
  fail "no reason from vlmd: $(cat "$dir/err")"
echo "example ok: $(grep -v finish "$dir/out" | tr '\n' ' ')"
