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
