#!/usr/bin/env python3
"""How far transformers' own bf16 run lands from the committed fp32 reference logits.

Yardstick for the bf16 checkpoints' tolerance: vlmd's bf16 dot-product path rounds the matmul
activations to bf16 (as a bf16 run does, though a bf16 run rounds every op's output too), so its
logits drift from the fp32 reference (tests/model/reference, gen_reference.py). This regenerates
each bf16 checkpoint with vlm-mkmodel, runs its prompts through transformers in bfloat16 (the
committed item embeddings written over the placeholders, positions from get_rope_index) and
prints, per prompt, the relative L2 error of the logits (the metric of test-model-reference) and
the largest |log-softmax difference| over every position and token.

usage: bf16_drift.py --mkmodel BUILD/tools/vlm-mkmodel [--ref tests/model/reference]
Needs: torch, transformers, numpy, safetensors. Not run by CI (prints figures, asserts nothing).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import transformers
from safetensors.numpy import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_reference as gr  # noqa: E402


@torch.no_grad()
def logits_of(model, vl, tokens, items, embs):
    emb = model.get_input_embeddings().weight
    e = emb[torch.tensor(tokens)].clone()
    k, i = 0, 0
    while i < len(tokens):
        if tokens[i] in (gr.IMG, gr.VID):
            j = i
            while j < len(tokens) and tokens[j] == tokens[i]:
                j += 1
            e[i:j] = torch.from_numpy(embs[k]).to(e.dtype)
            k += 1
            i = j
        else:
            i += 1
    pos, _ = gr.rope_index(model, tokens, items, vl)
    out = model(inputs_embeds=e[None], position_ids=pos if vl else pos[0], use_cache=False)
    return out.logits[0].float().numpy()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mkmodel", required=True)
    ap.add_argument("--ref", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                  "reference"))
    args = ap.parse_args()
    man = json.load(open(os.path.join(args.ref, "manifest.json")))
    with tempfile.TemporaryDirectory() as tmp:
        for ck in man["checkpoints"]:
            if "bf16" not in ck["name"]:
                continue
            d = os.path.join(tmp, ck["name"])
            subprocess.run([args.mkmodel] + ck["mkmodel_args"] + [d], check=True,
                           stdout=subprocess.DEVNULL)
            arch = json.load(open(os.path.join(d, "config.json")))["architectures"][0]
            vl = arch != "Qwen2ForCausalLM"
            cls = getattr(transformers, arch)
            model = cls.from_pretrained(d, dtype=torch.bfloat16, attn_implementation="eager").eval()
            fx = load_file(os.path.join(args.ref, ck["fixture"]))
            for p in ck["prompts"]:
                tokens = [int(t) for t in fx[f"{p}.tokens"]]
                items = [tuple(int(v) for v in (it[0], it[2], it[3], it[4]))
                         for it in fx[f"{p}.items"]]
                embs = [fx[f"{p}.emb{j}"] for j in range(len(items))]
                got = logits_of(model, vl, tokens, items, embs)
                ref = fx[f"{p}.logits"]
                rel = max(float(np.linalg.norm(got[r] - ref[r]) / np.linalg.norm(ref[r]))
                          for r in range(ref.shape[0]))
                lg = torch.log_softmax(torch.from_numpy(got), -1)
                lr = torch.log_softmax(torch.from_numpy(ref), -1)
                dlp = float((lg - lr).abs().max())
                print(f"{ck['name']}/{p}: transformers bf16 vs fp32 reference: max rel err "
                      f"{rel:.3g}, max |dlogprob| {dlp:.3g}")


if __name__ == "__main__":
    main()
