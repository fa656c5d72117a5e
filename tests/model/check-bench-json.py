#!/usr/bin/env python3
"""Smoke test of `vlm-bench decode|prefill --json` on the tiny preset: the command succeeds and its
last output line is one JSON object with the fields the project's reports rely on (no timing is
judged here; figures are the benchmark's business)."""
import json
import os
import subprocess
import sys

bench = sys.argv[1]
need = {
    "decode": ["tokens_per_s", "floor_tokens_per_s", "bandwidth_gbps", "batch",
               "batch1_tokens_per_s", "batch1_floor_tokens_per_s", "batch8_speedup",
               "fastest_tokens_per_s", "bandwidth_floor_tokens_per_s",
               "compute_floor_tokens_per_s", "peak_gflops", "peak_kind", "peak_f32_gflops",
               "peak_bf16_gflops", "peak_int8_gops"],
    "prefill": ["tokens_per_s", "floor_tokens_per_s", "bandwidth_gbps", "batch", "peak_gflops",
                "fraction_of_peak", "peak_kind", "peak_f32_gflops", "peak_bf16_gflops",
                "peak_int8_gops", "quantize", "quantized_weights"],
}
args = {
    "decode": ["--preset", "tiny", "--batch", "1,8,3", "--steps", "2", "--context", "5"],
    "prefill": ["--preset", "tiny", "--dtype", "f32", "--tokens", "40", "--reps", "1"],
}
for cmd in ("decode", "prefill"):
    out = subprocess.run([bench, cmd, "--json"] + args[cmd], capture_output=True, text=True,
                         timeout=300)
    if out.returncode != 0:
        sys.exit(f"vlm-bench {cmd} failed ({out.returncode}): {out.stderr}")
    last = out.stdout.strip().splitlines()[-1]
    obj = json.loads(last)
    missing = [k for k in need[cmd] if k not in obj]
    if missing:
        sys.exit(f"vlm-bench {cmd} --json lacks {missing}: {last}")
    if cmd == "decode":
        if obj["batch"] != [1, 8, 3] or len(obj["tokens_per_s"]) != 3:
            sys.exit(f"decode: per-batch arrays wrong: {last}")
        vals = obj["tokens_per_s"] + obj["floor_tokens_per_s"] + [obj["bandwidth_gbps"]]
        # the floor is the lower of the bandwidth and compute floors
        for f, b, c in zip(obj["floor_tokens_per_s"], obj["bandwidth_floor_tokens_per_s"],
                           obj["compute_floor_tokens_per_s"]):
            if abs(f - min(b, c)) > 1e-3 * f:
                sys.exit(f"decode: floor {f} is not min(bandwidth {b}, compute {c}): {last}")
    else:
        vals = [obj["tokens_per_s"], obj["floor_tokens_per_s"], obj["peak_gflops"],
                obj["peak_f32_gflops"]]
    if not all(isinstance(v, (int, float)) and v > 0 for v in vals):
        sys.exit(f"vlm-bench {cmd}: non-positive figures: {last}")
    # the peak a benchmark reports against is the probe's figure for the weights' instructions
    want = {"bf16": "peak_bf16_gflops", "f32": "peak_f32_gflops"}.get(obj["peak_kind"])
    if want is None or abs(obj["peak_gflops"] - obj[want]) > 1e-3 * obj["peak_gflops"]:
        sys.exit(f"vlm-bench {cmd}: peak_gflops {obj['peak_gflops']} is not {want}: {last}")
    if obj["dtype"] == "f32" and obj["peak_kind"] != "f32":
        sys.exit(f"vlm-bench {cmd}: f32 weights reported against the {obj['peak_kind']} peak")
    print(f"{cmd}: {last}")

# --quantize int8: every Linear weight and the head quantized (tiny: 2 layers x 7 + lm_head), and
# the floor counts the int8 bytes (1 per value + an fp32 scale and zero per row) instead of bf16's
# 2 per value: the bytes per step must shrink. Counted, not timed.
base = ["decode", "--json", "--preset", "tiny", "--batch", "1", "--steps", "1"]
objs = []
for q in ("none", "int8"):
    out = subprocess.run([bench] + base + ["--quantize", q], capture_output=True, text=True,
                         timeout=300)
    if out.returncode != 0:
        sys.exit(f"vlm-bench decode --quantize {q} failed ({out.returncode}): {out.stderr}")
    objs.append(json.loads(out.stdout.strip().splitlines()[-1]))
if objs[1].get("quantize") != "int8" or objs[1].get("quantized_weights") != 15:
    sys.exit(f"decode --quantize int8: {objs[1]}")
if objs[0].get("quantized_weights") != 0:
    sys.exit(f"decode --quantize none: {objs[0]}")
wb = [o["weight_bytes_per_step"] for o in objs]
if not wb[1] < 0.6 * wb[0]:
    sys.exit(f"int8 weight bytes per step {wb[1]} not below 0.6 x bf16's {wb[0]}")
print(f"decode --quantize int8: {wb[1]} weight bytes per step (bf16: {wb[0]})")

# prefill --quantize int8 reports the quantized weights it ran and the peak their kernels use: the
# bf16 dot product's where the probe has it (the CPU's quantized dot path), else fp32's; with
# VLM_CPU_BF16DOT=0 (the fp32 kernels, no bf16 peak probed) fp32's
for dot in ("1", "0"):
    env = dict(os.environ, VLM_CPU_BF16DOT=dot)
    out = subprocess.run([bench, "prefill", "--json", "--preset", "tiny", "--dtype", "bf16",
                          "--tokens", "20", "--reps", "1", "--quantize", "int8"],
                         capture_output=True, text=True, timeout=300, env=env)
    if out.returncode != 0:
        sys.exit(f"vlm-bench prefill --quantize int8 failed ({out.returncode}): {out.stderr}")
    obj = json.loads(out.stdout.strip().splitlines()[-1])
    if obj.get("quantize") != "int8" or obj.get("quantized_weights") != 15:
        sys.exit(f"prefill --quantize int8: {obj}")
    kind = "bf16" if obj["peak_bf16_gflops"] > 0 else "f32"
    if dot == "0" and obj["peak_bf16_gflops"] > 0:
        sys.exit(f"prefill --quantize int8 with VLM_CPU_BF16DOT=0 probed a bf16 peak: {obj}")
    if obj["peak_f32_gflops"] > 0 and obj["peak_kind"] != kind:
        sys.exit(f"prefill --quantize int8 (VLM_CPU_BF16DOT={dot}) reported against the "
                 f"{obj['peak_kind']} peak, expected {kind}: {obj}")
    print(f"prefill --quantize int8 (VLM_CPU_BF16DOT={dot}): {obj['quantized_weights']} quantized "
          f"weights, {obj['peak_kind']} peak")

# decode --op-times: each batch's timed steps split by op. Counted, not timed: per step the tiny
# preset (2 layers) makes 15 matmul calls (7 per layer + the head), 5 norms (2 per layer + the
# final one), 2 attentions and 1 argmax; and the ops' times are disjoint parts of the steps, so
# their sum cannot exceed the steps' wall time.
out = subprocess.run([bench, "decode", "--json", "--op-times", "--preset", "tiny", "--batch", "1,3",
                      "--steps", "3", "--context", "4"], capture_output=True, text=True, timeout=300)
if out.returncode != 0:
    sys.exit(f"vlm-bench decode --op-times failed ({out.returncode}): {out.stderr}")
if "op times per step" not in out.stdout:
    sys.exit(f"decode --op-times: no text table: {out.stdout}")
obj = json.loads(out.stdout.strip().splitlines()[-1])
ot = obj.get("op_times")
if not isinstance(ot, list) or [e.get("batch") for e in ot] != [1, 3]:
    sys.exit(f"decode --op-times: op_times per batch missing: {ot}")
for e in ot:
    ops = e["ops"]
    mm = sum(v["calls"] for k, v in ops.items() if k.startswith("matmul_"))
    want = {"norms": 5, "attention": 2, "argmax": 1, "matmul_head": 1, "matmul_down": 2}
    got = {k: ops.get(k, {}).get("calls") for k in want}
    if mm != 15 or got != want:
        sys.exit(f"decode --op-times batch {e['batch']}: {mm} matmul calls per step, {got}: {e}")
    total = sum(v["ms"] for v in ops.values())
    if not all(v["ms"] >= 0 and v["cpu_ms"] >= 0 for v in ops.values()) or \
            total > e["step_ms"] * (1 + 1e-3) or e["outside_ops_ms"] < -1e-3 * e["step_ms"]:
        sys.exit(f"decode --op-times batch {e['batch']}: op times sum {total} ms of a "
                 f"{e['step_ms']} ms step: {e}")
print(f"decode --op-times: {len(ot)} batches split by op")
