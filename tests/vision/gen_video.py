#!/usr/bin/env python3
"""Reference video preprocessing for suite `vision` (tests/vision/test-video.c), computed by
transformers (CI has no torch: the outputs are committed).

    /root/venv-ref/bin/python tests/vision/gen_video.py

Writes tests/vision/video.json and arrays/video_frames_*.rgb:
  - "sampling": Qwen2VLVideoProcessor.sample_frames(VideoMetadata(total, fps=source_fps),
    fps= / num_frames= / min_frames= / max_frames=) for a list of frame counts and rates: the
    frame indices and the sampled frame rate (VideoMetadata.sampled_fps after sampling), or the
    error transformers raises (the C side must refuse those);
  - "videos": synthetic clips (raw RGB frames committed) through the whole processor call with
    their metadata (do_sample_frames=True; fps or num_frames), per-frame pixel bounds of the case:
    video_grid_thw, the SHA-256 of pixel_values_videos (float32 little endian) and
    second_per_grid_ts as Qwen2_5_VLProcessor computes it (temporal_patch_size / sampled_fps);
    one clip also from the PNG frame files video_f*.png; one with cap_pixels_per_frame=True and a
    small max_video_tokens, so the total budget sets the frame size;
  - "config": the video processor transformers loads from tests/vision (only
    preprocessor_config.json there, so the image file's pixel bounds apply to frames).
"""
import hashlib
import json
import os

import numpy as np
import torch
import transformers
from PIL import Image
from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor
from transformers.video_utils import VideoMetadata

HERE = os.path.dirname(os.path.abspath(__file__))

# (total frames, source fps, fps, num_frames, min_frames, max_frames)
SAMPLING = [
    (10, 30.0, 2.0, None, None, None),      # clamped up to min_frames 4
    (300, 30.0, 2.0, None, None, None),     # 20 frames
    (301, 29.97, 2.0, None, None, None),
    (97, 24.0, 1.0, None, None, None),
    (1000, 25.0, 3.0, None, None, 64),      # max_frames
    (7, 30.0, 2.0, None, None, None),       # fewer than min_frames: all it can, even
    (5, 10.0, 6.0, None, None, None),
    (3, 30.0, 2.0, None, None, None),
    (1, 30.0, 2.0, None, None, None),       # error: nothing to keep
    (20, None, None, 8, None, None),
    (20, 30.0, None, 7, None, None),        # rounds half-to-even: 7/2 = 3.5 -> 4 -> 8 frames
    (20, 30.0, None, 5, None, None),        # 2.5 -> 2 -> 4 frames
    (33, 12.0, None, 10, None, None),
    (9, None, None, 12, None, None),        # error: more than there are
    (20, None, None, 1, None, None),        # error: rounds to 0
    (12, None, 2.0, None, None, None),      # error: fps without the video's rate
    (1200, 59.94, 2.0, None, 8, 768),
    (50, 5.0, 6.0, None, None, None),       # more than the source rate: every frame, even
]

# (name, frames, height, width, source fps, fps, num_frames, min_pixels, max_pixels,
#  max_video_tokens: cap_pixels_per_frame=True with it, None: no cap)
VIDEOS = [
    ("fps2", 12, 36, 48, 6.0, 2.0, None, 3136, 12544, None),
    ("fps6", 9, 30, 40, 10.0, 6.0, None, 3136, 6272, None),
    ("num5", 7, 50, 30, 30.0, None, 5, 3136, 12544, None),
    ("all_unknown_rate", 3, 36, 48, None, None, None, 3136, 12544, None),
    # the total cap binds: int(20 * 784 * 0.9) * 2 // 6 frames = 4704 px per frame
    ("capped", 6, 120, 160, 30.0, None, None, 3136, 50176, 20),
]


def frames_of(n, h, w, seed):
    """Smooth gradients plus noise, a different phase per frame (resampling sees real
    structure)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    out = []
    for f in range(n):
        r = (x * 255 // max(w - 1, 1) + 17 * f) % 256
        g = (y * 255 // max(h - 1, 1) + 29 * f) % 256
        b = ((x + y) * 7 + 41 * f) % 256
        img = np.stack([r, g, b], axis=-1).astype(np.int32) + rng.integers(-20, 21, (h, w, 3))
        out.append(np.clip(img, 0, 255).astype(np.uint8))
    return np.stack(out)


def sha(pv):
    return hashlib.sha256(np.ascontiguousarray(pv.numpy().astype("<f4")).tobytes()).hexdigest()


def main():
    vp = Qwen2VLVideoProcessor()
    sampling = []
    for total, src, fps, num, mnf, mxf in SAMPLING:
        kw = {}
        if fps is not None:
            kw["fps"] = fps
        if num is not None:
            kw["num_frames"] = num
        if mnf is not None:
            kw["min_frames"] = mnf
        if mxf is not None:
            kw["max_frames"] = mxf
        meta = VideoMetadata(total_num_frames=total, fps=src)
        case = {"total": total, "source_fps": src or 0, "fps": fps or 0, "num_frames": num or 0,
                "min_frames": mnf or 0, "max_frames": mxf or 0}
        try:
            idx = vp.sample_frames(meta, **kw)
            meta.frames_indices = idx
            case["indices"] = [int(v) for v in idx]
            case["sampled_fps"] = meta.sampled_fps if src else 24
        except (ValueError, ZeroDivisionError) as e:
            case["error"] = type(e).__name__
        sampling.append(case)

    videos = []
    for i, (name, n, h, w, src, fps, num, mn, mx, mvt) in enumerate(VIDEOS):
        clip = frames_of(n, h, w, 100 + i)
        fn = "arrays/video_frames_%s_%dx%dx%d.rgb" % (name, n, h, w)
        with open(os.path.join(HERE, fn), "wb") as f:
            f.write(clip.tobytes())
        p = Qwen2VLVideoProcessor(min_pixels=mn, max_pixels=mx)
        kw = {}
        if fps is not None or num is not None:
            kw["do_sample_frames"] = True
        if fps is not None:
            kw["fps"] = fps
        if num is not None:
            kw["num_frames"] = num
        kw["cap_pixels_per_frame"] = mvt is not None
        if mvt is not None:
            kw["max_video_tokens"] = mvt
        meta = {"total_num_frames": n, "fps": src} if src else None
        out = p(videos=[clip], video_metadata=[meta] if meta else None, return_metadata=True,
                return_tensors="pt", **kw)
        md = out["video_metadata"][0]
        sampled = md.sampled_fps
        videos.append({
            "name": name, "frames": fn, "n_frames": n, "height": h, "width": w,
            "source_fps": src or 0, "fps": fps or 0, "num_frames": num or 0,
            "min_pixels": mn, "max_pixels": mx, "max_video_tokens": mvt or 0,
            "indices": [int(v) for v in (md.frames_indices if md.frames_indices is not None
                                         else range(n))],
            "grid": [int(v) for v in out["video_grid_thw"][0]],
            "rows": int(out["pixel_values_videos"].shape[0]),
            "sha256": sha(out["pixel_values_videos"]),
            # Qwen2_5_VLProcessor._process_videos: temporal_patch_size / sampled_fps, which
            # becomes a float32 tensor (the model multiplies it by tokens_per_second)
            "second_per_grid": p.temporal_patch_size / sampled,
            "second_per_grid_f32": float(torch.tensor([p.temporal_patch_size / sampled])[0]),
        })
    # PNG frame files (video_f0..2_64x48.png), num_frames 2 of 3
    files = ["video_f%d_64x48.png" % k for k in range(3)]
    clip = np.stack([np.array(Image.open(os.path.join(HERE, "images", f)).convert("RGB"))
                     for f in files])
    p = Qwen2VLVideoProcessor(min_pixels=12544, max_pixels=50176)
    out = p(videos=[clip], video_metadata=[{"total_num_frames": 3, "fps": 4.0}],
            do_sample_frames=True, num_frames=2, return_metadata=True, return_tensors="pt")
    md = out["video_metadata"][0]
    files_case = {"files": files, "source_fps": 4.0, "num_frames": 2, "min_pixels": 12544,
                  "max_pixels": 50176, "indices": [int(v) for v in md.frames_indices],
                  "grid": [int(v) for v in out["video_grid_thw"][0]],
                  "rows": int(out["pixel_values_videos"].shape[0]),
                  "sha256": sha(out["pixel_values_videos"]),
                  "second_per_grid": p.temporal_patch_size / md.sampled_fps}

    cp = Qwen2VLVideoProcessor.from_pretrained(HERE)
    config = {"dir": ".", "min_pixels": cp.size["shortest_edge"],
              "max_pixels": cp.size["longest_edge"], "temporal_patch_size": cp.temporal_patch_size,
              "do_sample_frames": bool(cp.do_sample_frames),
              "class_min_pixels": Qwen2VLVideoProcessor().size["shortest_edge"],
              "class_max_pixels": Qwen2VLVideoProcessor().size["longest_edge"]}
    meta = {"generator": "tests/vision/gen_video.py", "transformers": transformers.__version__,
            "torch": torch.__version__, "sampling": sampling, "videos": videos,
            "files": files_case, "config": config}
    with open(os.path.join(HERE, "video.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    for c in sampling:
        print(c["total"], c["source_fps"], c["fps"], c["num_frames"],
              c.get("indices", c.get("error"))[:12] if "indices" in c else c["error"])
    for v in videos + [files_case]:
        print(v.get("name", "files"), v["indices"], v["grid"], v["second_per_grid"])


if __name__ == "__main__":
    main()
