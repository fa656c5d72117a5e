#!/bin/sh
# tests/model/test-quant-serve.sh VLMD VLM_MKMODEL VLM_GENERATE PYTHON QUANTWRITE_PY — quantized
# weights through the real daemon: vlmd serving (1) a tiny Qwen2 checkpoint with --quantize int8
# and (2) its GPTQ int4 act-order copy written by tools/quantwrite.py logs what it quantized
# (model_loaded quant=int8 quantized_weights=15: 7 matrices x 2 layers + the output head;
# quant=gptq-int4 quantized_weights=14) and answers a vlm-generate request with 8 tokens; and
# vlmd refuses (exit 1, the reason in the log) a quantization_config it does not run (bits 3)
# and a GPTQ checkpoint whose g_idx groups are not group_size columns each.
set -u
vlmd=$1
mkmodel=$2
gen=$3
py=$4
qw=$5
dir=$(mktemp -d /tmp/vlmd-quant-XXXXXX)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$dir"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
for v in $(env | sed -n 's/^\(VLMD_[A-Z_]*\)=.*/\1/p'); do unset "$v"; done
export VLMD_CONFIG=

# serve MODEL_DIR LOG [FLAGS...]: start vlmd, wait for it, run one request, stop it
serve() {
  m=$1; log=$2; shift 2
  rm -f "$dir/s"
  "$vlmd" --socket "$dir/s" --model "$m" --threads 1 --kv-memory 4M "$@" 2>"$log" &
  pid=$!
  i=0
  while [ $i -lt 400 ] && ! grep -q "event=ready\|event=model_load_failed" "$log"; do
    sleep 0.05; i=$((i + 1))
  done
  VLM_SOCKET=$dir/s timeout 60 "$gen" --tokens 5,6,7,8 --max-tokens 8 --ignore-eos --ids \
    >"$log.out" 2>"$log.gen"
  rc=$?
  kill "$pid"; wait "$pid"; pid=
  [ $rc -eq 0 ] || fail "$m $*: vlm-generate exit $rc: $(cat "$log.gen") $(grep error "$log")"
  n=$(tr ' ,' '\n\n' <"$log.out" | grep -c '^[0-9][0-9]*$')
  [ "$n" -eq 8 ] || fail "$m $*: $n tokens, want 8: $(cat "$log.out")"
}

"$mkmodel" --preset tiny-qwen2 --dtype bf16 --seed 3 "$dir/m" >/dev/null || fail "mkmodel"
serve "$dir/m" "$dir/int8.log" --quantize int8
grep -q 'event=model_loaded .*quant=int8 quantized_weights=15' "$dir/int8.log" ||
  fail "int8: $(grep -E 'model_loaded|error' "$dir/int8.log")"
serve "$dir/m" "$dir/none.log"
grep -q 'event=model_loaded .*quant=none quantized_weights=0' "$dir/none.log" ||
  fail "none: $(grep -E 'model_loaded|error' "$dir/none.log")"

"$py" "$qw" --format gptq --bits 4 --group 64 --desc-act "$dir/m" "$dir/q" 2>/dev/null ||
  fail "quantwrite"
serve "$dir/q" "$dir/gptq.log"
grep -q 'event=model_loaded .*quant=gptq-int4 quantized_weights=14' "$dir/gptq.log" ||
  fail "gptq: $(grep -E 'model_loaded|error' "$dir/gptq.log")"

# refused: bits 3, and a g_idx with unequal groups
sed 's/"bits": 4/"bits": 3/' "$dir/q/config.json" >"$dir/c3" && mkdir "$dir/q3" &&
  cp "$dir/q/model.safetensors" "$dir/q3/" && cp "$dir/c3" "$dir/q3/config.json"
timeout 60 "$vlmd" --socket "$dir/s" --model "$dir/q3" --threads 1 2>"$dir/q3.log"
rc=$?
[ $rc -eq 1 ] || fail "bits 3: exit $rc"
grep -q 'gptq with 3 bits is not supported' "$dir/q3.log" || fail "bits 3: $(grep error "$dir/q3.log")"
"$py" - "$dir/q/model.safetensors" "$dir/qg.safetensors" <<'PY' || fail "g_idx edit"
import json, struct, sys
d = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", d[:8])[0]
h = json.loads(d[8:8 + n])
e = h["model.layers.1.mlp.down_proj.g_idx"]
b = 8 + n + e["data_offsets"][0]
d = bytearray(d)
d[b:b + 4] = struct.pack("<i", 1 - struct.unpack("<i", d[b:b + 4])[0] % 2)   # move one column
open(sys.argv[2], "wb").write(d)
PY
mkdir "$dir/qg" && cp "$dir/qg.safetensors" "$dir/qg/model.safetensors" && cp "$dir/q/config.json" "$dir/qg/"
timeout 60 "$vlmd" --socket "$dir/s" --model "$dir/qg" --threads 1 2>"$dir/qg.log"
rc=$?
[ $rc -eq 1 ] || fail "bad g_idx: exit $rc"
grep -q "down_proj.g_idx': group [0-9]* has [0-9]* input columns, group_size is 64" "$dir/qg.log" ||
  fail "bad g_idx: $(grep error "$dir/qg.log")"

[ $fails -eq 0 ] && echo "quantized serving: ok"
exit $fails
