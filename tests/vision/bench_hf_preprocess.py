#!/usr/bin/env python3
"""transformers' Qwen2-VL image preprocessing timed on one image, one thread, next to
`vlm-bench vision` on the same file in the same run (the ratio is the figure to report).

    /root/venv-ref/bin/python tests/vision/bench_hf_preprocess.py BUILD/tools/vlm-bench \
        [tests/vision/images/jpeg_1280x720.jpg] [--iters 20]

transformers: AutoImageProcessor from tests/vision/preprocessor_config.json (Qwen2-VL-2B-Instruct's
values; default backend torchvision), torch.set_num_threads(1). Times are the thread's CPU time
(time.thread_time: what holds on a shared, oversubscribed machine; the work is single-threaded on
both sides), wall times beside them. Two figures, median of warm runs:
hf_total_ms = PIL.Image.open + exif_transpose + load (the decode) + processor(images=...,
return_tensors="pt"), the same work preprocess_ms does from encoded bytes; hf_processor_ms = the
processor alone on the decoded PIL image. preprocess_ms is vlmclient's path into reused (arena)
memory, preprocess_heap_ms the one into a fresh buffer per image (vlm_image_load_memory). The
pixel values of both sides are compared too (SHA-256),
so the figure is for identical output.

bf16 row (the pixel type vlmclient sends for a bfloat16 checkpoint; transformers casts
pixel_values to the tower's dtype before the patch embedding, `pixel_values.type(
self.visual.dtype)`): hf_bf16_total_ms = the same transformers run plus
`torch.from_numpy(pv).to(torch.bfloat16)` (the model's cast), timed in the same loop;
preprocess_bf16_ms = `vlm-bench vision --bf16` (vlmclient's arena path writing bf16 patches),
run right after the f32 one.

Floors (from vlm-bench, same runs): decode_ms = libjpeg-turbo decoding the bytes to RGB alone;
write_ms = streaming as many bytes as the patches take (non-temporal stores into the same reused
memory); floor_ms = decode_ms + write_ms, what a preprocess doing nothing else would cost (f32,
and the *_bf16_* ones for the bf16 run's half-size output). For a 4:2:0 JPEG, whose rows
vlmclient makes from libjpeg's planes itself: planes_ms = libjpeg's entropy decoding + IDCT
alone (the part of the decode no preprocessing avoids), planes_floor_ms = planes_ms + write_ms. bf16_identical: vlmclient's bf16 bytes (vlmclient.Image(...,
dtype="bfloat16"), needs the binding: PYTHONPATH=python VLM_LIBRARY=BUILD/client) equal
transformers' cast, bit for bit.
"""
import argparse
import hashlib
import io
import json
import os
import statistics
import subprocess
import time

import numpy as np
import torch
from PIL import Image, ImageOps
from transformers import AutoImageProcessor

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("vlm_bench")
    ap.add_argument("image", nargs="?", default=os.path.join(HERE, "images", "jpeg_1280x720.jpg"))
    ap.add_argument("--iters", type=int, default=20)
    a = ap.parse_args()
    torch.set_num_threads(1)
    proc = AutoImageProcessor.from_pretrained(HERE)
    data = open(a.image, "rb").read()

    def decode():
        im = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
        im.load()
        return im

    total, only, wall, total16 = [], [], [], []
    pv = pv16 = None
    for i in range(a.iters + 1):
        w0 = time.perf_counter()
        t0 = time.thread_time()
        im = decode()
        t1 = time.thread_time()
        out = proc(images=im, return_tensors="pt")
        t2 = time.thread_time()
        w2 = time.perf_counter()
        pv = out["pixel_values"]
        t3 = time.thread_time()
        pv16 = pv.to(torch.bfloat16)      # the cast the model makes for a bf16 tower
        t4 = time.thread_time()
        if i:
            total.append((t2 - t0) * 1e3)
            only.append((t2 - t1) * 1e3)
            wall.append((w2 - w0) * 1e3)
            total16.append((t2 - t0 + t4 - t3) * 1e3)
    hf_sha = hashlib.sha256(np.ascontiguousarray(pv.numpy(), dtype="<f4").tobytes()).hexdigest()
    r = subprocess.run([a.vlm_bench, "vision", "--image", a.image, "--iters", str(a.iters),
                        "--json"], check=True, capture_output=True, text=True)
    ours = json.loads(r.stdout.strip().splitlines()[-1])
    r = subprocess.run([a.vlm_bench, "vision", "--image", a.image, "--iters", str(a.iters),
                        "--bf16", "--json"], check=True, capture_output=True, text=True)
    ours16 = json.loads(r.stdout.strip().splitlines()[-1])
    # our pixels' hash through the Python binding when it is importable
    our_sha = None
    try:
        import vlmclient
        our_pv, _ = vlmclient.preprocess_image(a.image)
        our_sha = hashlib.sha256(np.ascontiguousarray(our_pv, dtype="<f4").tobytes()).hexdigest()
    except Exception as e:  # noqa: BLE001 - the binding is optional here
        our_sha = "not checked (%s)" % e.__class__.__name__
    # bf16: vlmclient's bytes vs transformers' cast of its float32 values
    try:
        import vlmclient
        with vlmclient.Image(a.image, dtype="bfloat16") as im16:
            our16 = np.ascontiguousarray(im16.pixel_values(), dtype="<u2")
        hf16 = pv16.contiguous().view(torch.int16).numpy().view("<u2")
        bf16_same = our16.shape == hf16.shape and bool((our16 == hf16).all())
    except Exception as e:  # noqa: BLE001 - the binding is optional here
        bf16_same = "not checked (%s)" % e.__class__.__name__
    res = {
        "image": os.path.basename(a.image),
        "processor": type(proc).__name__,
        "backend": "torchvision",
        "threads": 1,
        "clock": "thread CPU time",
        "hf_total_ms": round(statistics.median(total), 3),
        "hf_processor_ms": round(statistics.median(only), 3),
        "preprocess_ms": ours["preprocess_ms"],
        "preprocess_heap_ms": ours.get("preprocess_heap_ms"),
        "decode_ms": ours["decode_ms"],
        "write_ms": ours.get("write_ms"),
        "floor_ms": ours.get("floor_ms"),
        "preprocess_over_floor": ours.get("preprocess_over_floor"),
        "planes_ms": ours.get("planes_ms"),
        "planes_floor_ms": ours.get("planes_floor_ms"),
        "hf_total_wall_ms": round(statistics.median(wall), 3),
        "preprocess_wall_ms": ours["preprocess_wall_ms"],
        "speedup_vs_hf_total": round(statistics.median(total) / ours["preprocess_ms"], 2),
        "speedup_vs_hf_processor": round(statistics.median(only) / ours["preprocess_ms"], 2),
        "pixels_identical": our_sha == hf_sha if not str(our_sha).startswith("not") else our_sha,
        "hf_bf16_total_ms": round(statistics.median(total16), 3),
        "preprocess_bf16_ms": ours16["preprocess_ms"],
        "preprocess_bf16_heap_ms": ours16.get("preprocess_heap_ms"),
        "decode_bf16_run_ms": ours16["decode_ms"],
        "write_bf16_ms": ours16.get("write_ms"),
        "floor_bf16_ms": ours16.get("floor_ms"),
        "preprocess_bf16_over_floor": ours16.get("preprocess_over_floor"),
        "planes_floor_bf16_ms": ours16.get("planes_floor_ms"),
        "speedup_bf16_vs_hf_bf16_total": round(statistics.median(total16) /
                                               ours16["preprocess_ms"], 2),
        "bf16_over_f32": round(ours16["preprocess_ms"] / ours["preprocess_ms"], 3),
        "bf16_identical": bf16_same,
        "grid": ours["grid"],
    }
    print(json.dumps(res))


if __name__ == "__main__":
    main()
