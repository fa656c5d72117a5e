#!/usr/bin/env python3
"""The vision tower's transformers references for the dtype x architecture pairs that
tests/model/vision-reference does not run on the scalar reference backend: Qwen2-VL in bf16 and
Qwen2.5-VL in fp32 (tests/model has tiny Qwen2-VL fp32 and tiny Qwen2.5-VL bf16 on cpu and ref,
the real widths on cpu only). Same generator, same packed batch (two images and a two-frame-pair
video), same pixels: tests/model/gen_vision_reference.py with its CASES replaced; the manifest
points at tests/model/vision-reference/pixels.f16 (checked to be byte-identical) instead of a
second copy. The checks are tests/model's test-vision-reference (test vision-tower-ref).

usage: /root/venv-ref/bin/python tests/vision/gen_tower_reference.py --mkmodel BUILD/tools/vlm-mkmodel
Needs: torch, transformers, numpy, safetensors.
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL = os.path.join(HERE, "..", "model")
sys.path.insert(0, MODEL)
import gen_vision_reference as g  # noqa: E402

OUT = os.path.join(HERE, "tower-reference")
g.CASES = [
    ("tiny-q2vl-bf16", ["--preset", "tiny", "--dtype", "bf16", "--seed", "27"], 1e-2,
     ["cpu", "ref"]),
    ("tiny-q25vl-f32", ["--preset", "tiny", "--arch", "qwen2.5-vl", "--dtype", "f32",
                        "--seed", "28", "--vision-layers", "4", "--vision-fullatt", "1,3"], 1e-4,
     ["cpu", "ref"]),
]

if __name__ == "__main__":
    sys.argv += ["--out", OUT]
    g.main()
    shared = os.path.join(MODEL, "vision-reference", "pixels.f16")
    mine = os.path.join(OUT, "pixels.f16")
    with open(shared, "rb") as a, open(mine, "rb") as b:
        assert a.read() == b.read(), "pixels differ from tests/model's: keep the copy"
    os.remove(mine)
    path = os.path.join(OUT, "manifest.json")
    with open(path) as f:
        man = json.load(f)
    man["pixels"] = "../../model/vision-reference/pixels.f16"
    man["generator"] = "tests/vision/gen_tower_reference.py"
    with open(path, "w") as f:
        json.dump(man, f, indent=1)
        f.write("\n")
    print("wrote", OUT)
