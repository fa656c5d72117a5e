#!/usr/bin/env python3
"""Smoke test of `vlm-bench vision-tower --json` (one block of the real Qwen2-VL / Qwen2.5-VL tower
shapes, a 56x56 image, batches 1 and 2): the command succeeds and its last output line is one JSON
object with the fields the reports rely on, the FLOPs of one 4x4-patch image as the tower's formula
gives them, and positive figures (no timing is judged here)."""
import json
import subprocess
import sys

bench = sys.argv[1]
D, N = 1280, 16                      # width; patches of a 56x56 image
for preset, inter, out_w, mlp_mats in (("qwen2-vl-2b", 5120, 1536, 2),
                                       ("qwen2.5-vl-3b", 3420, 2048, 3)):
    out = subprocess.run([bench, "vision-tower", "--json", "--preset", preset, "--layers", "1",
                          "--size", "56", "--batch", "1,2", "--reps", "1"],
                         capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        sys.exit(f"vlm-bench vision-tower {preset} failed ({out.returncode}): {out.stderr}")
    last = out.stdout.strip().splitlines()[-1]
    obj = json.loads(last)
    for k in ("encoder_fraction_of_peak", "peak_gflops", "peak_kind", "gflop_per_image", "batches",
              "grid"):
        if k not in obj:
            sys.exit(f"{preset}: --json lacks {k}: {last}")
    if obj["peak_kind"] not in ("bf16", "f32"):
        sys.exit(f"{preset}: peak_kind {obj['peak_kind']}: {last}")
    if obj["grid"] != [1, 4, 4] or [b["batch"] for b in obj["batches"]] != [1, 2]:
        sys.exit(f"{preset}: grid / batches wrong: {last}")
    # one block: qkv, proj, MLP; attention over the one 16-row segment (Qwen2.5-VL: a 2x2-block
    # window is the whole image too); patch embed; merger [4, 4D] -> 4D -> out
    flops = (2 * N * 1176 * D + 2 * N * D * 3 * D + 2 * N * D * D + 2 * N * D * inter * mlp_mats
             + 4 * D * N * N + 2 * (N // 4) * 4 * D * (4 * D + out_w))
    if abs(obj["gflop_per_image"] - flops / 1e9) > 1e-3:
        sys.exit(f"{preset}: gflop_per_image {obj['gflop_per_image']}, formula {flops / 1e9}")
    vals = [obj["encoder_fraction_of_peak"], obj["peak_gflops"]] + \
        [b[k] for b in obj["batches"] for k in ("ms", "images_per_s", "gflops")]
    if not all(isinstance(v, (int, float)) and v > 0 for v in vals):
        sys.exit(f"{preset}: non-positive figures: {last}")
    print(f"{preset}: {last}")
