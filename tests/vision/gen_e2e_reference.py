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
Writes tests/vision/e2e.json: per model its vlm-mkmodel arguments, per case the images, prompt,
input_ids, image grids and tokens.
"""
import json
import os
import subprocess
import sys
import tempfile

import torch
from PIL import Image, ImageOps
from transformers import (AutoModelForImageTextToText, PreTrainedTokenizerFast, Qwen2VLImageProcessor,
                          Qwen2VLProcessor, Qwen2VLVideoProcessor)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TOKENIZER = "tests/tokenizer/data/tokenizer.json"

MODELS = {
    "qwen2-vl": ["--preset", "tiny", "--dtype", "f32", "--seed", "5"],
    "qwen2.5-vl": ["--preset", "tiny", "--arch", "qwen2.5-vl", "--dtype", "f32", "--seed", "5"],
}
CASES = [
    ("one", ["png_rgba_120x90.png"], "Describe this image."),
    ("two", ["jpeg_baseline_720x477.jpg", "webp_lossy_160x120.webp"], "Compare the two pictures."),
    ("rotated", ["jpeg_exif6_90x60.jpg"], "What is in it?"),
]
N_TOKENS = 32


def chat_text(n_images, prompt):
    return ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n" +
            "<|vision_start|><|image_pad|><|vision_end|>" * n_images + prompt +
            "<|im_end|>\n<|im_start|>assistant\n")


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
            proc = Qwen2VLProcessor(image_processor=Qwen2VLImageProcessor.from_pretrained(md),
                                    tokenizer=tok, video_processor=Qwen2VLVideoProcessor())
            model = AutoModelForImageTextToText.from_pretrained(md, dtype=torch.float32).eval()
            model.generation_config.eos_token_id = None
            model.generation_config.pad_token_id = 0
            for case, files, prompt in CASES:
                imgs = [ImageOps.exif_transpose(Image.open(os.path.join(HERE, "images", f)))
                        for f in files]
                inp = proc(text=[chat_text(len(files), prompt)], images=imgs, return_tensors="pt")
                with torch.no_grad():
                    gen = model.generate(**inp, max_new_tokens=N_TOKENS, do_sample=False)
                ids = inp["input_ids"][0].tolist()
                out["cases"].append({
                    "model": name, "name": case, "images": files, "prompt": prompt,
                    "input_ids": ids, "grids": inp["image_grid_thw"].tolist(),
                    "tokens": gen[0][len(ids):].tolist()})
                print(name, case, len(ids), inp["image_grid_thw"].tolist(),
                      out["cases"][-1]["tokens"][:8])
    with open(os.path.join(HERE, "e2e.json"), "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
