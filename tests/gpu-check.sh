#!/usr/bin/env bash
# tests/gpu-check.sh — the one script to run on the GPU machine (one H200, no package registry).
#
#  1. Unpacks the Debian packages carried in .debs/ (tests/gpu-fetch-debs.sh fetches them) into a
#     prefix with dpkg -x and points PATH / pkg-config / the compilers at it.
#  2. Builds with CUDA (SASS for the GPU's own architecture only, to save build time).
#  3. Runs the `cuda` test suite (ops vs references, parity vs the CPU backend, graphs, sampling,
#     sticky errors, the two-process CUDA IPC test) and the model reference test on the CUDA
#     backend (greedy tokens and logits against the committed Hugging Face outputs).
#  4. Runs the benchmarks: embedding substitution vs one copy; vlm-bench decode (batch 1, 8, 32,
#     128) and prefill (2048 tokens) with --backend cuda on random Qwen2-VL-2B and -7B weights,
#     each against floors measured in the same run (the backend probe: copy/read bandwidth, cuBLAS
#     bf16 GEMM rate). The 7B runs only if the time budget allows.
#  5. Writes logs and summary.json under $OUT (default ./gpu-check-out) and prints a table last.
# Finishes in under 8 minutes (GPU_CHECK_BUDGET seconds, default 450, guards the optional steps).
# Usage on the device machine:  OUT=$OUT tests/gpu-check.sh     (run with carry [".debs"])
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
T0=$(date +%s)
BUDGET=${GPU_CHECK_BUDGET:-450}
OUT=${OUT:-$ROOT/gpu-check-out}
LOGS=$OUT/logs
WORK=${TMPDIR:-/tmp}/vlm-gpu-check.$$
PREFIX=$WORK/prefix
BUILD=$ROOT/build-gpu
mkdir -p "$LOGS" "$WORK"
trap 'rm -rf "$WORK"' EXIT

elapsed() { echo $(($(date +%s) - T0)); }
left() { echo $((BUDGET - $(elapsed))); }
ROWS=()
row() { ROWS+=("$1|$2|$3"); echo "[$(elapsed)s] $1: $2 ${3:+($3)}"; }
RESULTS=$WORK/results.jsonl   # one JSON object per line, merged into summary.json at the end
: >"$RESULTS"
result() { printf '{"step":"%s","status":"%s","data":%s}\n' "$1" "$2" "${3:-null}" >>"$RESULTS"; }
lastjson() { grep -E '^\{.*\}$' "$1" | tail -n 1; }

# ---- 1. packages ------------------------------------------------------------------------------
if compgen -G ".debs/*.deb" >/dev/null; then
	mkdir -p "$PREFIX"
	for d in .debs/*.deb; do
		if command -v dpkg >/dev/null; then
			dpkg -x "$d" "$PREFIX"
		else   # no dpkg: a .deb is an ar archive holding data.tar.*
			(cd "$WORK" && ar x "$ROOT/$d" && tar -xf data.tar.* -C "$PREFIX" && rm -f data.tar.* control.tar.* debian-binary)
		fi
	done
	# .pc files name /usr: point them at the prefix
	for dir in "$PREFIX/usr/lib/x86_64-linux-gnu/pkgconfig" "$PREFIX/usr/share/pkgconfig"; do
		compgen -G "$dir/*.pc" >/dev/null && sed -i -E "s#^([A-Za-z_]+)=/usr#\1=$PREFIX/usr#" "$dir"/*.pc
	done
	export PATH="$PREFIX/usr/bin:$PATH"
	export PKG_CONFIG_PATH="$PREFIX/usr/lib/x86_64-linux-gnu/pkgconfig:$PREFIX/usr/share/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
	export CPATH="$PREFIX/usr/include${CPATH:+:$CPATH}"
	export LIBRARY_PATH="$PREFIX/usr/lib/x86_64-linux-gnu${LIBRARY_PATH:+:$LIBRARY_PATH}"
	export LD_LIBRARY_PATH="$PREFIX/usr/lib/x86_64-linux-gnu:$PREFIX/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
	export PYTHONPATH="$PREFIX/usr/lib/python3/dist-packages${PYTHONPATH:+:$PYTHONPATH}"
	[ -x /usr/bin/python3 ] || export PYTHONHOME="$PREFIX/usr"
	row packages ok "$(ls .debs/*.deb | wc -l) .debs unpacked"
else
	row packages ok "no .debs/: using the system's packages"
fi
[ -d /usr/local/cuda/bin ] && export PATH="/usr/local/cuda/bin:$PATH"
PY=$(command -v python3 || true)
MESON="$PY $(command -v meson || echo meson)"

# ---- 2. GPU and build -------------------------------------------------------------------------
GPU=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -n 1)
CAP=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n 1 | tr -d '. ')
[ -n "$CAP" ] || CAP=90
row gpu "${GPU:+ok}${GPU:-missing}" "${GPU:-nvidia-smi found no GPU} sm_$CAP"
{ nvidia-smi; nvcc --version; cc --version; } >"$LOGS/env.log" 2>&1

build_ok=0
if [ -z "$PY" ] || ! command -v nvcc >/dev/null || ! command -v cc >/dev/null; then
	row build FAIL "missing python3, nvcc or cc"
else
	rm -rf "$BUILD"
	if $MESON setup "$BUILD" -Dcuda=enabled -Dgpu_arch="$CAP" -Dbuildtype=release \
		>"$LOGS/build.log" 2>&1 && ninja -C "$BUILD" -j"$(nproc)" >>"$LOGS/build.log" 2>&1; then
		build_ok=1
		row build ok "$(elapsed)s, sm_$CAP"
	else
		row build FAIL "see logs/build.log"
		tail -n 30 "$LOGS/build.log"
	fi
fi
result build "$([ $build_ok = 1 ] && echo ok || echo FAIL)"

# ---- 3. tests -------------------------------------------------------------------------------------
if [ $build_ok = 1 ]; then
	# the GPU tests of the suite (the *-emu ones run the same code on CPU threads in CI)
	$MESON test -C "$BUILD" --print-errorlogs --num-processes 1 cuda-ops cuda-parity cuda-ipc \
		>"$LOGS/test-cuda.log" 2>&1
	cp "$BUILD/meson-logs/testlog.txt" "$LOGS/test-cuda-testlog.txt" 2>/dev/null
	counts=$("$PY" - "$BUILD/meson-logs/testlog.json" <<'PY'
import json, sys
r = {"passed": 0, "failed": 0, "skipped": 0, "tests": {}}
for line in open(sys.argv[1]):
    t = json.loads(line)
    k = {"OK": "passed", "SKIP": "skipped"}.get(t["result"], "failed")
    r[k] += 1
    r["tests"][t["name"]] = t["result"]
print(json.dumps(r))
PY
)
	st=$(echo "$counts" | "$PY" -c 'import json,sys; r=json.load(sys.stdin); print("ok" if r["failed"]==0 and r["passed"]>0 else "FAIL")')
	row "cuda suite" "$st" "$(echo "$counts" | "$PY" -c 'import json,sys; r=json.load(sys.stdin); print("%d passed, %d failed, %d skipped" % (r["passed"], r["failed"], r["skipped"]))')"
	result cuda_suite "$st" "$counts"

	ref=$BUILD/tests/model/test-model-reference
	if [ -x "$ref" ]; then
		if timeout 180 "$ref" tests/model/reference "$BUILD/tools/vlm-mkmodel" cuda \
			>"$LOGS/model-reference-cuda.log" 2>&1; then
			row "model reference (cuda)" ok "HF logits + greedy tokens"
			result model_reference_cuda ok
		else
			row "model reference (cuda)" FAIL "see logs/model-reference-cuda.log"
			result model_reference_cuda FAIL
		fi
	else
		row "model reference (cuda)" skipped "test-model-reference not in this tree"
		result model_reference_cuda skipped
	fi
	# quantized checkpoints (GPTQ / AWQ / --quantize int8, docs/QUANTIZATION.md): quantwrite.py
	# needs a python3 with numpy
	if [ -x "$ref" ] && [ -d tests/model/quant-reference ] &&
	   "$PY" -c 'import numpy' 2>/dev/null; then
		if timeout 180 "$ref" --python "$PY" --quantwrite tools/quantwrite.py \
			tests/model/quant-reference "$BUILD/tools/vlm-mkmodel" cuda \
			>"$LOGS/model-quant-reference-cuda.log" 2>&1; then
			row "quantized model reference (cuda)" ok "GPTQ/AWQ/int8 vs HF on dequantized weights"
			result model_quant_reference_cuda ok
		else
			row "quantized model reference (cuda)" FAIL "see logs/model-quant-reference-cuda.log"
			result model_quant_reference_cuda FAIL
		fi
	else
		row "quantized model reference (cuda)" skipped "no test, fixtures or python3 numpy"
		result model_quant_reference_cuda skipped
	fi
fi

# ---- 4. benchmarks ---------------------------------------------------------------------------
bench() {   # name, timeout, command...
	local name=$1 limit=$2
	shift 2
	if [ "$(left)" -lt $((limit / 2)) ]; then
		row "$name" skipped "time budget"
		result "$name" skipped
		return 1
	fi
	if timeout "$limit" "$@" >"$LOGS/$name.log" 2>&1; then
		local j
		j=$(lastjson "$LOGS/$name.log")
		result "$name" ok "${j:-null}"
		echo "$j" >"$OUT/$name.json"
		return 0
	fi
	row "$name" FAIL "exit $?, see logs/$name.log"
	result "$name" FAIL
	return 1
}

if [ $build_ok = 1 ]; then
	if bench embed-substitution 60 "$BUILD/tests/cuda/cuda-embed-bench"; then
		row embed-substitution ok "$("$PY" -c 'import json,sys; j=json.loads(sys.argv[1]); print("worst fp32 kernel/copy %.2fx (goal <= 1.2x)" % j["worst_fp32_kernel_over_copy"])' "$(lastjson "$LOGS/embed-substitution.log")")"
	fi
	if "$BUILD/tools/vlm-bench" 2>&1 | grep -q decode; then
		for preset in qwen2-vl-2b qwen2-vl-7b; do
			[ "$preset" = qwen2-vl-7b ] && [ "$(left)" -lt 200 ] && { row "$preset" skipped "time budget"; continue; }
			dir=$WORK/$preset
			if ! timeout 150 "$BUILD/tools/vlm-mkmodel" --preset "$preset" --dtype bf16 "$dir" \
				>"$LOGS/mkmodel-$preset.log" 2>&1; then
				row "mkmodel $preset" FAIL "see logs/mkmodel-$preset.log"
				continue
			fi
			if bench "decode-$preset" 150 "$BUILD/tools/vlm-bench" decode --model "$dir" \
				--backend cuda --batch 1,8,32,128 --steps 16 --json; then
				row "decode $preset" ok "$("$PY" -c 'import json,sys; j=json.loads(sys.argv[1]); print("b1 %.0f tok/s = %.0f%% of floor %.0f" % (j.get("batch1_tokens_per_s",0), 100*j.get("batch1_fraction_of_floor",0), j.get("batch1_floor_tokens_per_s",0)))' "$(cat "$OUT/decode-$preset.json")" 2>/dev/null)"
			fi
			if bench "prefill-$preset" 120 "$BUILD/tools/vlm-bench" prefill --model "$dir" \
				--backend cuda --tokens 2048 --reps 2 --json; then
				row "prefill $preset" ok "$("$PY" -c 'import json,sys; j=json.loads(sys.argv[1]); print("%.0f tok/s, %.0f%% of GEMM rate" % (j.get("tokens_per_s",0), 100*j.get("fraction_of_peak", j.get("gflops",0)/max(j.get("peak_gflops",1),1))))' "$(cat "$OUT/prefill-$preset.json")" 2>/dev/null)"
			fi
			if [ "$preset" = qwen2-vl-2b ] && VLM_CUDA_GEMM=single bench "prefill-$preset-single" 120 \
				"$BUILD/tools/vlm-bench" prefill --model "$dir" --backend cuda --tokens 2048 --reps 2 --json; then
				row "prefill $preset single" ok "$("$PY" -c 'import json,sys; j=json.loads(sys.argv[1]); print("VLM_CUDA_GEMM=single: %.0f tok/s, %.0f%% of GEMM rate" % (j.get("tokens_per_s",0), 100*j.get("fraction_of_peak",0)))' "$(cat "$OUT/prefill-$preset-single.json")" 2>/dev/null)"
			fi
			rm -rf "$dir"
		done
	else
		row "vlm-bench decode/prefill" skipped "not in this tree (model stream)"
		result vlm_bench skipped
	fi
fi

# ---- 5. summary ---------------------------------------------------------------------------------
"$PY" - "$RESULTS" "$OUT/summary.json" "$(elapsed)" "$GPU" <<'PY' 2>/dev/null || cp "$RESULTS" "$OUT/summary.jsonl"
import json, sys
steps = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
summary = {"elapsed_s": int(sys.argv[3]), "gpu": sys.argv[4],
           "ok": all(s["status"] in ("ok", "skipped") for s in steps),
           "steps": {s["step"]: {"status": s["status"], "data": s["data"]} for s in steps}}
json.dump(summary, open(sys.argv[2], "w"), indent=1)
PY
echo
printf '%-28s %-8s %s\n' STEP STATUS DETAIL
for r in "${ROWS[@]}"; do
	IFS='|' read -r a b c <<<"$r"
	printf '%-28s %-8s %s\n' "$a" "$b" "$c"
done
printf '%-28s %-8s %s\n' total "$(elapsed)s" "summary: $OUT/summary.json"
for r in "${ROWS[@]}"; do
	case "$r" in *"|FAIL|"*) exit 1 ;; esac
done
exit 0
