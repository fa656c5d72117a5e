#!/usr/bin/env python3
"""Writes a real-sized (151,643 + 22 added ids) Qwen2-format tokenizer.json for benchmarks.

Not committed (about 7 MB): bench_vs_hf.py runs this at bench time. Standard library only.
The vocabulary starts from the 256 byte-level characters and grows by merges of two existing
tokens into a new one, choosing substrings of a mixed-script corpus so that the merges are ones
real text uses; merges are written as [a, b] pairs like current Qwen2 files (--legacy-merges
writes the "a b" form). Configuration (normalizer, pre-tokenizer, decoder, added tokens) is
Qwen2-VL's.

usage: gen_big_tokenizer.py OUT.json [--vocab 151643] [--seed 1] [--legacy-merges]
"""
import argparse
import json
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from corpus_data import QWEN2_PATTERN, QWEN2VL_SPECIALS, make_mixed_text  # noqa: E402



def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--vocab", type=int, default=151643)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--legacy-merges", action="store_true")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    b2u = bytes_to_unicode()
    vocab = {b2u[b]: b for b in range(256)}
    order = [b2u[b] for b in range(256)]
    merges = []
    corpus = make_mixed_text(2_000_000, seed=a.seed).encode("utf-8")
    words = [w for w in corpus.split(b" ") if len(w) >= 2]
    tries = 0
    while len(vocab) < a.vocab:
        tries += 1
        if tries < a.vocab * 20:
            w = rng.choice(words)
            i = rng.randrange(0, len(w) - 1)
            s = (b" " if rng.random() < 0.4 else b"") + w[i:i + rng.randint(2, 10)]
            s = "".join(b2u[c] for c in s)
        else:  # corpus exhausted: combine existing tokens
            s = rng.choice(order) + rng.choice(order)
        if s in vocab or len(s) < 2:
            continue
        cuts = [k for k in range(1, len(s)) if s[:k] in vocab and s[k:] in vocab]
        if not cuts:
            continue
        k = rng.choice(cuts)
        merges.append([s[:k], s[k:]])
        vocab[s] = len(order)
        order.append(s)
    added = [{"id": len(vocab) + i, "content": c, "single_word": False, "lstrip": False,
              "rstrip": False, "normalized": False, "special": True}
             for i, c in enumerate(QWEN2VL_SPECIALS + [
                 "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>",
                 "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>"])]
    doc = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": QWEN2_PATTERN}, "behavior": "Isolated",
             "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
             "use_regex": False}]},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
                           "use_regex": False},
        "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
                    "use_regex": False},
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": "", "end_of_word_suffix": "", "fuse_unk": False,
                  "byte_fallback": False, "ignore_merges": False, "vocab": vocab,
                  "merges": "@MERGES@"},
    }
    # Laid out like the real file: indented, one merge per line.
    ms = [json.dumps(" ".join(m) if a.legacy_merges else m, ensure_ascii=False) for m in merges]
    text = json.dumps(doc, ensure_ascii=False, indent=2).replace(
        '"@MERGES@"', "[\n      " + ",\n      ".join(ms) + "\n    ]")
    with open(a.out, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"{a.out}: {len(vocab)} vocab, {len(merges)} merges, {len(added)} added",
          file=sys.stderr)


if __name__ == "__main__":
    main()
