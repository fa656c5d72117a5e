#!/usr/bin/env python3
"""Reference tokens for the vision end-to-end test (tests/vision/test-serve-vision.c).

Run by hand with the transformers venv (CI only reads the committed e2e.json):
    /root/venv-ref/bin/python tests/vision/gen_e2e_reference.py build/tools/vlm-mkmodel

For each model (random weights, made by vlm-mkmodel exactly as the C test makes it, fitted to
tests/tokenizer/data/tokenizer.json) and each case (committed images + a text prompt):
  - the prompt is the Qwen2-VL chat turn libvlmclient renders (default system turn, the images
    first, then the text: what `vlm-generate --image F --prompt TEXT` sends), expanded and tokenized
    by transformers' Qwen2VLProcessor (Qwen2VLImageProcessor with the checkpoint's
    preprocessor_config.json, default torchvision backend);
  - images are opened as tests/vision/gen_pixels.py does (PIL open + EXIF transpose, the mode kept
    so the processor composites alpha on white);
  - 32 greedy tokens from Qwen2VLForConditionalGeneration / Qwen2_5_VLForConditionalGeneration
    .generate (fp32, no EOS: the C side sets ignore_eos).
Video cases: clips of PNG frames in tests/vision/clips/NAME/ (written here from a fixed formula
when absent), opened as uint8 arrays and given to the processor with their metadata
(VideoMetadata(total_num_frames, fps)) and sampling (do_sample_frames=True with fps or
num_frames), the video processor loaded from the checkpoint (Qwen2VLVideoProcessor.from_pretrained:
its preprocessor_config.json's pixel bounds); Qwen2.5-VL through Qwen2_5_VLProcessor, whose
second_per_grid_ts (temporal_patch_size / sampled fps) spaces the video's temporal position ids.
The media of a case go in the order listed, then the text. Every case's M-RoPE ids are checked
to be the same under transformers 5.x's rule (the text after a video continues at
start + max(h, w) / merge) and the original rule vlmd uses (largest id + 1), so the fixture
never asks vlmd for the 5.x-only behaviour (see daemon/model/mrope.h).
Writes tests/vision/e2e.json: per model its vlm-mkmodel arguments, per case the media (images;
videos with their frames and sampling), prompt, input_ids, grids, second_per_grid_ts and tokens.
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
from PIL import Image, ImageOps
from transformers import (AutoModelForImageTextToText, PreTrainedTokenizerFast, Qwen2VLImageProcessor,
                          Qwen2VLProcessor, Qwen2VLVideoProcessor, Qwen2_5_VLProcessor)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_video import frames_of  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TOKENIZER = "tests/tokenizer/data/tokenizer.json"

MODELS = {
    "qwen2-vl": ["--preset", "tiny", "--dtype", "f32", "--seed", "5"],
    "qwen2.5-vl": ["--preset", "tiny", "--arch", "qwen2.5-vl", "--dtype", "f32", "--seed", "5"],
}
# clips: name -> (frames, height, width, seed); PNG frames f00.png ... in tests/vision/clips/name
CLIPS = {"walk": (12, 36, 48, 7), "pan": (9, 30, 40, 8)}
# a video medium: {"clip", "source_fps", "fps" or "num_frames"}
WALK_2FPS = {"clip": "walk", "source_fps": 6.0, "fps": 2.0}           # 4 frames, 1 s per pair
PAN_6 = {"clip": "pan", "source_fps": 10.0, "num_frames": 6}          # 6 frames, 0.3 s per pair
CASES = [
    ("one", ["png_rgba_120x90.png"], "Describe this image."),
    ("two", ["jpeg_baseline_720x477.jpg", "webp_lossy_160x120.webp"], "Compare the two pictures."),
    ("rotated", ["jpeg_exif6_90x60.jpg"], "What is in it?"),
    ("video", [WALK_2FPS], "Describe this video."),
    ("video-image", ["png_28x28.png", PAN_6], "What changes between the frames?"),
]
N_TOKENS = 32


def chat_text(media, prompt):
    pads = "".join("<|vision_start|><|image_pad|><|vision_end|>" if isinstance(m, str) else
                   "<|vision_start|><|video_pad|><|vision_end|>" for m in media)
    return ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n" +
            pads + prompt + "<|im_end|>\n<|im_start|>assistant\n")


def clip_files(name):
    n, h, w, seed = CLIPS[name]
    d = os.path.join(HERE, "clips", name)
    os.makedirs(d, exist_ok=True)
    files = [os.path.join(d, "f%02d.png" % k) for k in range(n)]
    if not all(os.path.exists(f) for f in files):
        for f, fr in zip(files, frames_of(n, h, w, seed)):
            Image.fromarray(fr).save(f, optimize=True)
    return files


def clip_array(name):
    return np.stack([np.array(Image.open(f).convert("RGB")) for f in clip_files(name)])


def rope_rules_agree(model, inp):
    """transformers 5.x's position ids equal the original rule's for this prompt: every text
    token's three ids are the largest id before it + 1."""
    kw = {k: inp[k] for k in ("image_grid_thw", "video_grid_thw", "second_per_grid_ts",
                              "mm_token_type_ids") if k in inp}
    pos, _ = model.model.get_rope_index(inp["input_ids"], **kw)
    pos = pos[:, 0].tolist()
    ids = inp["input_ids"][0].tolist()
    pads = (model.config.image_token_id, model.config.video_token_id)
    top = -1
    for i, t in enumerate(ids):
        if t not in pads and not (pos[0][i] == pos[1][i] == pos[2][i] == top + 1):
            return False
        top = max(top, pos[0][i], pos[1][i], pos[2][i])
    return True


def main():
    mkmodel = sys.argv[1]
    out = {"tokenizer": TOKENIZER, "n_tokens": N_TOKENS, "models": {}, "cases": []}
    with tempfile.TemporaryDirectory() as tmp:
        for name, args in MODELS.items():
            md = os.path.join(tmp, name)
            subprocess.run([mkmodel] + args + ["--tokenizer", os.path.join(ROOT, TOKENIZER), md],
                           check=True)
            out["models"][name] = {"mkmodel_args": args}
            tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(md, "tokenizer.json"))
            pcls = Qwen2_5_VLProcessor if name == "qwen2.5-vl" else Qwen2VLProcessor
            proc = pcls(image_processor=Qwen2VLImageProcessor.from_pretrained(md),
                        tokenizer=tok, video_processor=Qwen2VLVideoProcessor.from_pretrained(md))
            model = AutoModelForImageTextToText.from_pretrained(md, dtype=torch.float32).eval()
            model.generation_config.eos_token_id = None
            model.generation_config.pad_token_id = 0
            for case, media, prompt in CASES:
                files = [m for m in media if isinstance(m, str)]
                vids = [m for m in media if not isinstance(m, str)]
                imgs = [ImageOps.exif_transpose(Image.open(os.path.join(HERE, "images", f)))
                        for f in files]
                kw = {}
                if imgs:
                    kw["images"] = imgs
                if vids:
                    # one processor call samples every video alike: one video per case here
                    assert len(vids) == 1
                    v = vids[0]
                    kw["videos"] = [clip_array(v["clip"])]
                    kw["video_metadata"] = [{"total_num_frames": CLIPS[v["clip"]][0],
                                             "fps": v["source_fps"]}]
                    kw["do_sample_frames"] = True
                    for k in ("fps", "num_frames"):
                        if k in v:
                            kw[k] = v[k]
                    kw["cap_pixels_per_frame"] = False
                inp = proc(text=[chat_text(media, prompt)], return_tensors="pt", **kw)
                assert rope_rules_agree(model, inp), (name, case)
                with torch.no_grad():
                    gen = model.generate(**inp, max_new_tokens=N_TOKENS, do_sample=False)
                if "second_per_grid_ts" in inp:
                    alt = dict(inp)
                    alt["second_per_grid_ts"] = inp["second_per_grid_ts"] * 4
                    with torch.no_grad():
                        g2 = model.generate(**alt, max_new_tokens=N_TOKENS, do_sample=False)
                    # else the C test could not see wrong temporal positions
                    assert g2[0].tolist() != gen[0].tolist(), (name, case, "time step unseen")
                ids = inp["input_ids"][0].tolist()
                c = {"model": name, "name": case, "media": [], "prompt": prompt,
                     "input_ids": ids, "tokens": gen[0][len(ids):].tolist()}
                gi = iter(inp["image_grid_thw"].tolist() if imgs else [])
                for m in media:
                    if isinstance(m, str):
                        c["media"].append({"image": m, "grid": next(gi)})
                    else:
                        vm = dict(m)
                        vm["frames"] = ["clips/%s/%s" % (m["clip"], os.path.basename(f))
                                        for f in clip_files(m["clip"])]
                        vm["grid"] = inp["video_grid_thw"][0].tolist()
                        if "second_per_grid_ts" in inp:
                            vm["second_per_grid"] = float(inp["second_per_grid_ts"][0])
                        c["media"].append({"video": vm})
                out["cases"].append(c)
                print(name, case, len(ids), [m.get("grid", m.get("video", {}).get("grid"))
                                             for m in c["media"]], c["tokens"][:8])
    with open(os.path.join(HERE, "e2e.json"), "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
