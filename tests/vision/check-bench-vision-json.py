#!/usr/bin/env python3
"""Smoke test of `vlm-bench vision --json` (the committed 1280x720 JPEG and the synthetic one, f32
and bf16, 2 timed runs): the command succeeds and its last output line is one JSON object with the
fields the reports rely on (preprocess_ms: the arena path, preprocess_heap_ms: a fresh buffer per
image, decode_ms and floor_ms = decode_ms + write_ms: the floors; both images are 4:2:0, so
planes_ms, libjpeg's part of the streamed decode, and planes_floor_ms = planes_ms + write_ms are
numbers too), output_bytes = the patches' size (4784 x 1176 values of 4 or 2 bytes), the grid smart_resize gives a 1280x720 image (1 x 52 x 92 patches),
and positive, finite figures (no timing is judged here)."""
import json
import math
import os
import subprocess
import sys

bench, vision_dir = sys.argv[1], sys.argv[2]
image = os.path.join(vision_dir, "images", "jpeg_1280x720.jpg")
for extra in ([], ["--bf16"], ["--image", image], ["--image", image, "--bf16"]):
    out = subprocess.run([bench, "vision", "--json", "--iters", "2"] + extra,
                         capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        sys.exit(f"vlm-bench vision {extra} failed ({out.returncode}): {out.stderr}")
    last = out.stdout.strip().splitlines()[-1]
    obj = json.loads(last)
    for k in ("preprocess_ms", "preprocess_heap_ms", "decode_ms", "preprocess_wall_ms",
              "preprocess_heap_wall_ms", "decode_wall_ms", "preprocess_over_decode", "grid",
              "dtype", "threads", "iters", "width", "height", "output_bytes", "write_ms",
              "floor_ms", "preprocess_over_floor", "planes_ms", "planes_floor_ms"):
        if k not in obj:
            sys.exit(f"{extra}: --json lacks {k}: {last}")
    if obj["grid"] != [1, 52, 92] or (obj["width"], obj["height"]) != (1280, 720):
        sys.exit(f"{extra}: grid / size wrong: {last}")
    if obj["dtype"] != ("bf16" if "--bf16" in extra else "f32") or obj["threads"] != 1 or \
            obj["iters"] != 2:
        sys.exit(f"{extra}: dtype / threads / iters wrong: {last}")
    for k in ("preprocess_ms", "preprocess_heap_ms", "decode_ms", "write_ms", "floor_ms",
              "planes_ms", "planes_floor_ms"):
        if not (obj[k] > 0 and math.isfinite(obj[k])):
            sys.exit(f"{extra}: {k} = {obj[k]}: {last}")
    if obj["output_bytes"] != 52 * 92 * 1176 * (2 if "--bf16" in extra else 4):
        sys.exit(f"{extra}: output_bytes wrong: {last}")
    if abs(obj["floor_ms"] - (obj["decode_ms"] + obj["write_ms"])) > 0.0015:
        sys.exit(f"{extra}: floor_ms is not decode_ms + write_ms: {last}")
    if abs(obj["planes_floor_ms"] - (obj["planes_ms"] + obj["write_ms"])) > 0.0015:
        sys.exit(f"{extra}: planes_floor_ms is not planes_ms + write_ms: {last}")
print("ok")
