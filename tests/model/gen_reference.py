#!/usr/bin/env python3
"""Reference outputs for the model suite, computed with Hugging Face transformers' own code.

For each tiny checkpoint (written by vlm-mkmodel with a fixed seed) and each prompt, this runs
Qwen2VLForConditionalGeneration / Qwen2ForCausalLM in fp32 (bf16 checkpoints are widened exactly,
so the reference sees the same bf16-rounded weights) with inputs_embeds = word embeddings with the
item rows written over the placeholder runs, and 3-D position ids from the model's own
get_rope_index. It records the logits of every prompt position and 32 greedy tokens (each step
recomputed from scratch over the whole sequence, positions again from get_rope_index).

Output (committed; CI needs neither torch nor network):
  reference/manifest.json        checkpoints: vlm-mkmodel arguments, FNV-1a 64 of every file,
                                 fixture file, tolerance; the environment that produced them
  reference/<checkpoint>.safetensors   per prompt P: P.tokens I32 [n], P.items I32 [k, 5]
                                 (placeholder, rows, t, h, w), P.emb<j> F32 [rows, hidden],
                                 P.pos I32 [3, n], P.delta I32 [1], P.logits F32 [n, vocab],
                                 P.greedy I32 [32]

usage: gen_reference.py --mkmodel BUILD/tools/vlm-mkmodel [--out tests/model/reference]
Needs: torch, transformers, numpy, safetensors (e.g. a venv outside the repository).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import zlib

import numpy as np
import torch
import transformers
from safetensors.numpy import save_file

GREEDY = 32

CHECKPOINTS = [
    # name, vlm-mkmodel args, relative tolerance of the logits
    ("vl-f32", ["--preset", "tiny", "--dtype", "f32", "--seed", "11"], 1e-4),
    ("vl-bf16", ["--preset", "tiny", "--dtype", "bf16", "--seed", "12", "--new-names",
                 "--nested-config", "--shards", "2"], 1e-2),
    ("vl25-bf16", ["--preset", "tiny", "--arch", "qwen2.5-vl", "--dtype", "bf16", "--seed", "16"],
     1e-2),
    ("qwen2-f32", ["--preset", "tiny-qwen2", "--dtype", "f32", "--seed", "13"], 1e-4),
    ("qwen2-bf16", ["--preset", "tiny-qwen2", "--dtype", "bf16", "--seed", "14", "--no-tie",
                    "--shards", "3"], 1e-2),
]

VS, VE, IMG, VID = 248, 249, 250, 251   # tiny preset's vision_start/end, image, video ids


def fnv1a64(path):
    h = 0xcbf29ce484222325
    data = open(path, "rb").read()
    # 64-bit FNV-1a, vectorised a little: python ints are slow per byte but files are small
    for b in data:
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % h


def text(rng, n):
    return [int(x) for x in rng.integers(3, 240, size=n)]


def vl_prompts(rng):
    """(name, tokens, items) with items = [(placeholder, t, h, w)] in prompt order."""
    def item(ph, t, h, w):
        return (ph, t, h, w), [ph] * (t * (h // 2) * (w // 2))
    p = []
    p.append(("text", text(rng, 24), []))
    it, toks = item(IMG, 1, 4, 4)
    p.append(("img_start", toks + [VE] + text(rng, 12), [it]))
    it, toks = item(IMG, 1, 4, 6)
    p.append(("img_middle", text(rng, 8) + [VS] + toks + [VE] + text(rng, 8), [it]))
    it, toks = item(IMG, 1, 6, 4)
    p.append(("img_end", text(rng, 10) + [VS] + toks, [it]))
    a, ta = item(IMG, 1, 4, 4)
    b, tb = item(IMG, 1, 2, 6)
    c, tc = item(IMG, 1, 6, 6)
    p.append(("three_images", text(rng, 4) + [VS] + ta + [VE] + text(rng, 3) + [VS] + tb + [VE] +
              text(rng, 2) + [VS] + tc + [VE] + text(rng, 3), [a, b, c]))
    v, tv = item(VID, 3, 4, 6)
    p.append(("video", text(rng, 5) + [VS] + tv + [VE] + text(rng, 5), [v]))
    return p


def qwen2_prompts(rng):
    p = [("text", text(rng, 24), []), ("text_long", text(rng, 40), [])]
    # a placeholder run on a 1-D model: substitution without M-RoPE
    p.append(("subst_1d", text(rng, 6) + [IMG] * 5 + text(rng, 6), [(IMG, 0, 0, 0)]))
    return p


def rows_of(item, merge=2):
    ph, t, h, w = item
    return t * (h // merge) * (w // merge) if t else 5


def original_rope_index(tokens, items, merge=2):
    """Qwen2-VL's original rule (transformers 4.x / vLLM): text after an item continues at the
    largest id + 1. Used only to check that it agrees with the installed get_rope_index."""
    pos = [[], [], []]
    nxt = 0
    i = 0
    k = 0
    n = len(tokens)
    while i < n:
        if tokens[i] in (IMG, VID) and k < len(items):
            ph, t, h, w = items[k]
            gh, gw = h // merge, w // merge
            top = nxt
            for a in range(t):
                for b in range(gh):
                    for c in range(gw):
                        pos[0].append(nxt + a)
                        pos[1].append(nxt + b)
                        pos[2].append(nxt + c)
                        top = max(top, nxt + a, nxt + b, nxt + c)
            i += t * gh * gw
            k += 1
            nxt = top + 1
        else:
            for r in pos:
                r.append(nxt)
            nxt += 1
            i += 1
    return np.array(pos, dtype=np.int64), nxt - n


def rope_index(model, tokens, items, vl, n_prompt=None):
    n = len(tokens)
    n_prompt = n if n_prompt is None else n_prompt
    if not vl:
        return torch.arange(n).view(1, 1, -1).expand(3, 1, -1), 0
    ids = torch.tensor([tokens])
    # generated tokens are text even if they happen to equal a placeholder id
    tt = torch.tensor([[1 if x == IMG and i < n_prompt else 2 if x == VID and i < n_prompt else 0
                        for i, x in enumerate(tokens)]], dtype=torch.int32)
    img = [list(it[1:]) for it in items if it[0] == IMG]
    vid = [list(it[1:]) for it in items if it[0] == VID]
    pos, delta = model.model.get_rope_index(
        ids, tt, image_grid_thw=torch.tensor(img) if img else None,
        video_grid_thw=torch.tensor(vid) if vid else None)
    return pos, int(delta.reshape(-1)[0])


@torch.no_grad()
def run_prompt(model, vl, tokens, items, embs):
    emb_table = model.get_input_embeddings().weight
    def embeds(seq):
        e = emb_table[torch.tensor(seq)].clone()
        # k-th run of placeholders takes the k-th tensor
        k = 0
        i = 0
        while i < len(tokens):   # only prompt positions hold items
            if tokens[i] in (IMG, VID):
                j = i
                while j < len(tokens) and tokens[j] == tokens[i]:
                    j += 1
                e[i:j] = torch.from_numpy(embs[k])
                k += 1
                i = j
            else:
                i += 1
        assert k == len(embs)
        return e[None]
    pos, delta = rope_index(model, tokens, items, vl)
    out = model(inputs_embeds=embeds(tokens), position_ids=pos if vl else pos[0], use_cache=False)
    logits = out.logits[0].float().numpy().copy()
    seq = list(tokens)
    greedy = []
    margins = []
    last = logits[-1]
    for step in range(GREEDY):
        top2 = np.sort(last)[-2:]
        margins.append(float(top2[1] - top2[0]))
        nxt = int(np.argmax(last))
        greedy.append(nxt)
        seq.append(nxt)
        if step == GREEDY - 1:
            break
        if vl:
            p, _ = rope_index(model, seq, items, vl, len(tokens))
            # generated tokens are text: their ids are index + delta on all axes
            assert all(int(p[a, 0, i]) == i + delta for a in range(3) for i in range(len(tokens), len(seq)))
        else:
            p = torch.arange(len(seq)).view(1, 1, -1).expand(3, 1, -1)
        o = model(inputs_embeds=embeds(seq), position_ids=p if vl else p[0], use_cache=False)
        last = o.logits[0, -1].float().numpy()
    return pos[:, 0, :].numpy().astype(np.int32), delta, logits, greedy, min(margins)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mkmodel", required=True)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                  "reference"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(0)
    manifest = {
        "generator": "tests/model/gen_reference.py",
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "greedy_tokens": GREEDY,
        "checkpoints": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        for ci, (name, mkargs, tol) in enumerate(CHECKPOINTS):
            d = os.path.join(tmp, name)
            subprocess.run([args.mkmodel] + mkargs + [d], check=True)
            files = {f: fnv1a64(os.path.join(d, f)) for f in sorted(os.listdir(d))}
            cfg = json.load(open(os.path.join(d, "config.json")))
            vl = cfg["architectures"][0] != "Qwen2ForCausalLM"
            if cfg["architectures"][0] == "Qwen2_5_VLForConditionalGeneration":
                model = transformers.Qwen2_5_VLForConditionalGeneration.from_pretrained(
                    d, dtype=torch.float32, attn_implementation="eager")
            elif vl:
                model = transformers.Qwen2VLForConditionalGeneration.from_pretrained(
                    d, dtype=torch.float32, attn_implementation="eager")
            else:
                model = transformers.Qwen2ForCausalLM.from_pretrained(
                    d, dtype=torch.float32, attn_implementation="eager")
            model.eval()
            hidden = model.get_input_embeddings().weight.shape[1]
            rng = np.random.default_rng(zlib.crc32(name.encode()))   # per checkpoint, stable
            prompts = vl_prompts(rng) if vl else qwen2_prompts(rng)
            if name.startswith("vl25"):   # images only: Qwen2.5-VL's video ids depend on timing
                prompts = [p for p in prompts if p[0] != "video"]
            tensors = {}
            names = []
            for pname, tokens, items in prompts:
                embs = []
                for it in items:
                    e = rng.standard_normal((rows_of(it), hidden)).astype(np.float32)
                    if "bf16" in name:   # exactly bf16-representable: the C test also feeds them as bf16
                        e = torch.from_numpy(e).to(torch.bfloat16).float().numpy()
                    embs.append(e)
                pos, delta, logits, greedy, margin = run_prompt(model, vl, tokens, items, embs)
                if vl:
                    opos, odelta = original_rope_index(tokens, items)
                    assert (opos == pos).all() and odelta == delta, (name, pname)
                if margin < 1e-3:
                    print(f"warning: {name}/{pname}: greedy top-2 margin {margin:.2e}",
                          file=sys.stderr)
                tensors[f"{pname}.tokens"] = np.array(tokens, dtype=np.int32)
                tensors[f"{pname}.items"] = np.array(
                    [[it[0], rows_of(it), it[1], it[2], it[3]] for it in items],
                    dtype=np.int32).reshape(-1, 5)
                for j, e in enumerate(embs):
                    tensors[f"{pname}.emb{j}"] = e
                tensors[f"{pname}.pos"] = np.ascontiguousarray(pos)
                tensors[f"{pname}.delta"] = np.array([delta], dtype=np.int32)
                tensors[f"{pname}.logits"] = logits.astype(np.float32)
                tensors[f"{pname}.greedy"] = np.array(greedy, dtype=np.int32)
                names.append(pname)
                print(f"{name}/{pname}: {len(tokens)} tokens, delta {delta}, greedy margin "
                      f"{margin:.3g}, greedy {greedy[:8]}...")
            fixture = f"{name}.safetensors"
            save_file(tensors, os.path.join(args.out, fixture),
                      metadata={"prompts": ",".join(names), "checkpoint": name})
            manifest["checkpoints"].append({
                "name": name, "mkmodel_args": mkargs, "files": files, "fixture": fixture,
                "rel_tol": tol, "prompts": names,
            })
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
