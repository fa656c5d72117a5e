#!/usr/bin/env python3
"""Smoke test of `vlm-bench decode|prefill --json` on the tiny preset: the command succeeds and its
last output line is one JSON object with the fields the project's reports rely on (no timing is
judged here; figures are the benchmark's business)."""
import json
import subprocess
import sys

bench = sys.argv[1]
need = {
    "decode": ["tokens_per_s", "floor_tokens_per_s", "bandwidth_gbps", "batch",
               "batch1_tokens_per_s", "batch1_floor_tokens_per_s", "batch8_speedup"],
    "prefill": ["tokens_per_s", "floor_tokens_per_s", "bandwidth_gbps", "batch", "peak_gflops",
                "fraction_of_peak"],
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
    else:
        vals = [obj["tokens_per_s"], obj["floor_tokens_per_s"], obj["peak_gflops"]]
    if not all(isinstance(v, (int, float)) and v > 0 for v in vals):
        sys.exit(f"vlm-bench {cmd}: non-positive figures: {last}")
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
