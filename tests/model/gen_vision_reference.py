#!/usr/bin/env python3
"""Reference outputs of the vision tower (ViT + PatchMerger), computed with transformers' own code.

For each checkpoint (written by vlm-mkmodel with a fixed seed; random weights) this loads the
tower's weights (visual.* / model.visual.*) into transformers' Qwen2VisionTransformerPretrainedModel
or Qwen2_5_VisionTransformerPretrainedModel built from the checkpoint's vision_config, runs one
packed batch of three items — a 10x14-patch image, a 2-frame-pair 6x8 video and an 18x20 image —
and records the merged rows (pooler_output). fp32 in transformers; bf16 checkpoints are widened
exactly, so the reference sees the same bf16-rounded weights (the convention of gen_reference.py).
For bf16 checkpoints the manifest also records how far transformers' own bf16 inference
(model.to(bfloat16), pixels cast to bf16, as Qwen2VLModel.get_image_features does) lands from
that reference: the error budget of the 1e-2 tolerance.

Output (committed; CI needs neither torch nor network):
  vision-reference/manifest.json   grids, input file, and per case: vlm-mkmodel arguments, the
                                   FNV-1a 64 of every checkpoint file, output file and shape,
                                   tolerance, transformers' own bf16 error; the environment
  vision-reference/pixels.f16      the pixel rows [N, 1176], IEEE half, little-endian (random
                                   normal values rounded to half, so fp32 sees them exactly)
  vision-reference/<case>.f32      merged rows [N / 4, out_hidden], little-endian float32

usage: gen_vision_reference.py --mkmodel BUILD/tools/vlm-mkmodel [--out tests/model/vision-reference]
Needs: torch, transformers, numpy, safetensors.
"""
import argparse
import json
import os
import subprocess
import tempfile

import numpy as np
import torch
import transformers
from safetensors.torch import load_file
from transformers import AutoConfig
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import \
    Qwen2_5_VisionTransformerPretrainedModel
from transformers.models.qwen2_vl.modeling_qwen2_vl import Qwen2VisionTransformerPretrainedModel

GRIDS = [(1, 10, 14), (2, 6, 8), (1, 18, 20)]

# Real widths (1280 wide, 16 heads, MLP 5120 / 3420) with few blocks; the merger writes a 256-wide
# "LLM" (the tiny language model's width: --hidden 256). Qwen2.5-VL: blocks 1 and 3 full
# attention, 0 and 2 windows. The small-width cases ("tiny") are cheap enough for the scalar
# reference backend too.
LM = ["--hidden", "256", "--heads", "4", "--kv-heads", "2", "--intermediate", "512",
      "--mrope-section", "8,12,12", "--layers", "1", "--vocab", "1024"]
CASES = [
    # name, vlm-mkmodel args, tolerance (max |diff| / max |ref|), backends
    ("q2vl-f32", ["--preset", "qwen2-vl-2b", "--dtype", "f32", "--seed", "21",
                  "--vision-layers", "2"] + LM, 1e-4, ["cpu"]),
    ("q2vl-bf16", ["--preset", "qwen2-vl-2b", "--dtype", "bf16", "--seed", "22",
                   "--vision-layers", "2", "--new-names"] + LM, 1e-2, ["cpu"]),
    ("q25vl-f32", ["--preset", "qwen2.5-vl-3b", "--dtype", "f32", "--seed", "23",
                   "--vision-layers", "4", "--vision-fullatt", "1,3"] + LM, 1e-4, ["cpu"]),
    ("q25vl-bf16", ["--preset", "qwen2.5-vl-3b", "--dtype", "bf16", "--seed", "24",
                    "--vision-layers", "4", "--vision-fullatt", "1,3", "--new-names"] + LM,
     1e-2, ["cpu"]),
    ("tiny-q2vl-f32", ["--preset", "tiny", "--dtype", "f32", "--seed", "25"], 1e-4,
     ["cpu", "ref"]),
    ("tiny-q25vl-bf16", ["--preset", "tiny", "--arch", "qwen2.5-vl", "--dtype", "bf16",
                         "--seed", "26", "--vision-layers", "4", "--vision-fullatt", "1,3"],
     1e-2, ["cpu", "ref"]),
]


def fnv1a64(path):
    h = 0xcbf29ce484222325
    for b in open(path, "rb").read():
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % h


def tower(d):
    cfg = AutoConfig.from_pretrained(d)
    vcfg = cfg.vision_config
    vcfg._attn_implementation = "eager"
    cls = (Qwen2_5_VisionTransformerPretrainedModel if cfg.model_type == "qwen2_5_vl"
           else Qwen2VisionTransformerPretrainedModel)
    model = cls._from_config(vcfg, torch_dtype=torch.float32)
    sd = {}
    for f in sorted(os.listdir(d)):
        if f.endswith(".safetensors"):
            for k, v in load_file(os.path.join(d, f)).items():
                for p in ("model.visual.", "visual."):
                    if k.startswith(p):
                        sd[k[len(p):]] = v.to(torch.float32)
    model.load_state_dict(sd, strict=True)
    return model.eval()


def run(model, pixels, grid, dtype):
    m = model.to(dtype)
    with torch.no_grad():
        out = m(pixels.to(dtype), grid_thw=grid)
    out = out.pooler_output if hasattr(out, "pooler_output") else out
    return out.to(torch.float32).numpy()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mkmodel", required=True)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "vision-reference"))
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    torch.manual_seed(0)
    n = sum(t * h * w for t, h, w in GRIDS)
    rng = np.random.default_rng(1234)
    pix16 = rng.standard_normal((n, 1176)).astype(np.float16)
    pix16.astype("<f2").tofile(os.path.join(a.out, "pixels.f16"))
    pixels = torch.from_numpy(pix16.astype(np.float32))
    grid = torch.tensor(GRIDS, dtype=torch.int64)
    man = {"grids": GRIDS, "pixels": "pixels.f16", "rows": n, "cols": 1176,
           "metric": "max |out - ref| / max |ref|", "cases": [],
           "environment": {"torch": torch.__version__, "transformers": transformers.__version__,
                           "numpy": np.__version__}}
    for name, args, tol, backends in CASES:
        with tempfile.TemporaryDirectory() as d:
            subprocess.run([a.mkmodel] + args + [d], check=True)
            model = tower(d)
            ref = run(model, pixels, grid, torch.float32)
            case = {"name": name, "mkmodel": args, "tol": tol, "backends": backends,
                    "out": name + ".f32", "out_rows": int(ref.shape[0]),
                    "out_cols": int(ref.shape[1]),
                    "files": {f: fnv1a64(os.path.join(d, f)) for f in sorted(os.listdir(d))}}
            scale = float(np.abs(ref).max())
            if "bf16" in name:
                hf16 = run(model, pixels, grid, torch.bfloat16)
                case["transformers_bf16_err"] = float(np.abs(hf16 - ref).max() / scale)
            ref.astype("<f4").tofile(os.path.join(a.out, name + ".f32"))
            man["cases"].append(case)
            print(name, ref.shape, "max |ref| %.4g" % scale,
                  "transformers bf16 err %.3g" % case.get("transformers_bf16_err", 0))
    with open(os.path.join(a.out, "manifest.json"), "w") as f:
        json.dump(man, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
