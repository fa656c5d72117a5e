#!/bin/sh
# tests/ops/test-config-checks.sh VLMD VLM_MKMODEL — issue 15, items 7, 9, 10: start-up and
# --check-config refuse the same things, config input is bounded, missing model fields take
# transformers' defaults and are logged, an unknown model_type is refused.
#  - --config /dev/zero and a 2 MiB file: refused at once (line / size bound), not read forever;
#  - --check-config refuses --threads 4096, --max-clients 100000000, --client-weights 5:0,
#    which start-up cannot honour;
#  - a Qwen2-VL f32 checkpoint whose config.json lacks torch_dtype, rope_theta and rms_norm_eps:
#    vlmd logs config_default for each (1000000, 1e-05: transformers' Qwen2-VL values; float32
#    from the weights) and model_loaded says kv_dtype=f32;
#  - model_type "llama" with a Qwen2-VL architecture: vlmd exits 1 naming the supported pairs.
set -u
vlmd=$1
mkmodel=$2
dir=$(mktemp -d /tmp/vlmd-cfgchk-XXXXXX)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$dir"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
for v in $(env | sed -n 's/^\(VLMD_[A-Z_]*\)=.*/\1/p'); do unset "$v"; done
export VLMD_CONFIG=

timeout 10 "$vlmd" --check-config --config /dev/zero >/dev/null 2>"$dir/err"
rc=$?
[ $rc -eq 1 ] || fail "/dev/zero: exit $rc ($(cat "$dir/err"))"
grep -q "line longer than 4096 bytes" "$dir/err" || fail "/dev/zero: $(cat "$dir/err")"
i=0
while [ $i -lt 70000 ]; do echo "# padding line $i for a config file larger than the bound"; i=$((i + 1)); done >"$dir/big.conf"
timeout 10 "$vlmd" --check-config --config "$dir/big.conf" >/dev/null 2>"$dir/err"
rc=$?
[ $rc -eq 1 ] && grep -q "larger than" "$dir/err" || fail "2 MiB config: exit $rc ($(cat "$dir/err"))"

for a in "--threads 4096" "--max-clients 100000000" "--client-weights 5:0"; do
  # shellcheck disable=SC2086
  "$vlmd" --check-config $a >/dev/null 2>"$dir/err"
  rc=$?
  [ $rc -eq 1 ] || fail "--check-config $a: exit $rc, want 1 (start-up refuses it)"
done

"$mkmodel" --preset tiny --dtype f32 "$dir/m" >/dev/null || fail "mkmodel"
sed -i '/"torch_dtype"/d; /"rope_theta"/d; /"rms_norm_eps"/d' "$dir/m/config.json"
grep -q rope_theta "$dir/m/config.json" && fail "rope_theta still in config.json"
"$vlmd" --socket "$dir/s" --model "$dir/m" --threads 1 2>"$dir/log" &
pid=$!
i=0
while [ $i -lt 200 ] && ! grep -q "event=model_loaded" "$dir/log"; do sleep 0.05; i=$((i + 1)); done
kill "$pid"; wait "$pid"; pid=
grep -q 'event=config_default key=rope_theta value=1e+06 source=transformers' "$dir/log" ||
  fail "no rope_theta default 1e6: $(grep -E 'config_default|error' "$dir/log")"
grep -q 'event=config_default key=rms_norm_eps value=1e-05 source=transformers' "$dir/log" ||
  fail "no rms_norm_eps default 1e-5"
grep -q 'event=config_default key=torch_dtype value=float32 source=weights' "$dir/log" ||
  fail "no torch_dtype default from the weights"
grep -q 'event=model_loaded .*kv_dtype=f32' "$dir/log" || fail "KV not f32: $(grep model_loaded "$dir/log")"

sed -i 's/"model_type": "qwen2_vl"/"model_type": "llama"/' "$dir/m/config.json"
timeout 20 "$vlmd" --socket "$dir/s" --model "$dir/m" --threads 1 2>"$dir/log"
rc=$?
[ $rc -ne 0 ] || fail "vlmd served a model_type llama checkpoint"
grep -q 'model_type \\"llama\\" does not match architecture Qwen2VLForConditionalGeneration (supported: Qwen2ForCausalLM/qwen2' "$dir/log" ||
  fail "model_type message: $(grep error "$dir/log")"

[ $fails -eq 0 ] && echo "config checks: ok"
exit $fails
