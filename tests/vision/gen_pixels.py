#!/usr/bin/env python3
"""Reference pixel_values for suite `vision`, computed by transformers (CI has no torch: the
outputs are committed).

    /root/venv-ref/bin/python tests/vision/gen_pixels.py

For each image in tests/vision/images: PIL.Image.open -> PIL.ImageOps.exif_transpose (what
transformers.image_utils.load_image does; load_image's own convert("RGB") would drop alpha, so the
image goes to the processor in its PIL mode and the processor's convert_to_rgb composites alpha on
white) -> AutoImageProcessor loaded from tests/vision/preprocessor_config.json (Qwen2-VL-2B-Instruct's
values; the default backend, torchvision: its class is recorded in fixtures.json). Written:
fixtures.json (per case: image, min/max pixels when not the checkpoint's, grid, patch rows,
SHA-256 of the float32 pixel_values bytes, and for small cases the name of a raw little-endian
float32 file in arrays/ with the whole array, so a mismatch can be located), plus one video case
from Qwen2VLVideoProcessor (frames already sampled, do_sample_frames=False).
"""
import hashlib
import json
import os
import sys

import numpy as np
import PIL
import torch
import transformers
from PIL import Image, ImageOps
from transformers import AutoImageProcessor
from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

HERE = os.path.dirname(os.path.abspath(__file__))
IMAGES = os.path.join(HERE, "images")
ARRAYS = os.path.join(HERE, "arrays")
FULL_MAX_ROWS = 16        # cases with at most this many patch rows get their whole array committed

# (image, min_pixels, max_pixels): None = the checkpoint's (preprocessor_config.json)
CUSTOM = [
    ("jpeg_1920x1080.jpg", None, 28 * 28 * 1280),           # the class default max: 1316x728
    ("jpeg_baseline_720x477.jpg", 100352, 200704),
    ("png_upscale_30x20.png", 50176, None),
    ("png_70x70.png", 3136, 3136),
    ("jpeg_1920x1080.jpg", 3136, 12544),                    # ~14x down: many small weights
    ("png_pano_2000x40.png", 3136, 31360),
]


def load(path):
    img = Image.open(path)
    return ImageOps.exif_transpose(img)


def record(name, pv, grid, extra):
    pv = np.ascontiguousarray(pv.numpy().astype(np.float32))
    case = dict(extra)
    case["grid"] = [int(v) for v in grid]
    case["rows"] = int(pv.shape[0])
    case["cols"] = int(pv.shape[1])
    case["sha256"] = hashlib.sha256(pv.astype("<f4").tobytes()).hexdigest()
    if pv.shape[0] <= FULL_MAX_ROWS:
        fn = name + ".f32"
        with open(os.path.join(ARRAYS, fn), "wb") as f:
            f.write(pv.astype("<f4").tobytes())
        case["array"] = "arrays/" + fn
    return case


def main():
    os.makedirs(ARRAYS, exist_ok=True)
    for f in os.listdir(ARRAYS):
        os.remove(os.path.join(ARRAYS, f))
    proc = AutoImageProcessor.from_pretrained(HERE)
    cfg = json.load(open(os.path.join(HERE, "preprocessor_config.json")))
    cases = []
    names = sorted(f for f in os.listdir(IMAGES) if os.path.isfile(os.path.join(IMAGES, f))
                   and not f.startswith("video_"))
    for f in names:
        out = proc(images=load(os.path.join(IMAGES, f)), return_tensors="pt")
        cases.append(record(f, out["pixel_values"], out["image_grid_thw"][0], {"image": f}))
    for f, mn, mx in CUSTOM:
        kw = {}
        if mn is not None:
            kw["min_pixels"] = mn
        if mx is not None:
            kw["max_pixels"] = mx
        p = AutoImageProcessor.from_pretrained(HERE, **kw)
        out = p(images=load(os.path.join(IMAGES, f)), return_tensors="pt")
        tag = f + ".min%s_max%s" % (mn or 0, mx or 0)
        cases.append(record(tag, out["pixel_values"], out["image_grid_thw"][0],
                            {"image": f, "min_pixels": mn or 0, "max_pixels": mx or 0}))
    # one image as the RGB bytes PIL hands the processor (alpha composited on white by the
    # processor's convert_to_rgb): the numpy-array input of the Python binding is checked with it
    from transformers.image_transforms import convert_to_rgb
    rgb = np.asarray(convert_to_rgb(load(os.path.join(IMAGES, "png_rgba_120x90.png")),
                                    return_numpy=True), dtype=np.uint8)
    with open(os.path.join(ARRAYS, "png_rgba_120x90.png.rgb"), "wb") as f:
        f.write(np.ascontiguousarray(rgb).tobytes())
    # video: 3 frames (padded to 4 by repeating the last), explicit per-frame pixel bounds
    frames = [os.path.join(IMAGES, "video_f%d_64x48.png" % i) for i in range(3)]
    vmin, vmax = 12544, 50176
    vp = Qwen2VLVideoProcessor(min_pixels=vmin, max_pixels=vmax, temporal_patch_size=2,
                               patch_size=14, merge_size=2)
    video = np.stack([np.array(Image.open(p).convert("RGB")) for p in frames])   # [T, H, W, 3]
    with open(os.path.join(ARRAYS, "video_frames_3x48x64.rgb"), "wb") as f:
        f.write(np.ascontiguousarray(video).tobytes())
    out = vp(videos=[video], do_sample_frames=False, return_tensors="pt")
    video_case = record("video_64x48x3", out["pixel_values_videos"], out["video_grid_thw"][0],
                        {"frames": [os.path.basename(p) for p in frames], "min_pixels": vmin,
                         "max_pixels": vmax})
    meta = {
        "generator": "tests/vision/gen_pixels.py",
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "pillow": PIL.__version__,
        "image_processor": type(proc).__module__ + "." + type(proc).__name__,
        "image_processor_backend": getattr(proc, "backend", None) or type(proc).__mro__[1].__name__,
        "video_processor": type(vp).__module__ + "." + type(vp).__name__,
        "checkpoint_min_pixels": cfg["min_pixels"],
        "checkpoint_max_pixels": cfg["max_pixels"],
        "images": cases,
        "video": video_case,
    }
    with open(os.path.join(HERE, "fixtures.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    print("processor:", meta["image_processor"], "backend:", meta["image_processor_backend"],
          "cases:", len(cases), file=sys.stderr)


if __name__ == "__main__":
    main()
