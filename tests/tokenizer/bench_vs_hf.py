#!/usr/bin/env python3
"""vlmd's tokenizer against Hugging Face `tokenizers` (one thread), measured in the same run.

    RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false \\
    /work/venv-tok/bin/python tests/tokenizer/bench_vs_hf.py --bench build/tools/vlm-bench

Builds (unless given) a 151k-vocab Qwen2-format tokenizer.json with gen_big_tokenizer.py and a
large mixed-script text, then for each tokenizer (the big one and the committed fixture):
  * load time: median of N loads, ours (vlm-bench) vs Tokenizer.from_file;
  * encode throughput: best of N warm runs after one cold run, once with the whole text as one
    string and once per paragraph (HF: encode_batch, which runs on one thread here);
  * the ids must be identical (FNV-1a hash of the id sequence compared).
Prints a table and the ratios (ours / HF: > 1 means faster for throughput, < 1 for load time).
Exit status 1 when the ids differ.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from corpus_data import make_mixed_text  # noqa: E402


def fnv1a(ids):
    h = 0xCBF29CE484222325
    for i in ids:
        h ^= i & 0xFFFFFFFF
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def hf_measure(tok_path, text, iters, load_iters, docs):
    from tokenizers import Tokenizer
    loads = []
    for _ in range(load_iters):
        t0 = time.perf_counter()
        tok = Tokenizer.from_file(tok_path)
        loads.append(time.perf_counter() - t0)
    if docs:
        parts = text.split("\n\n")
        run = lambda: [i for e in tok.encode_batch(parts) for i in e.ids]  # noqa: E731
    else:
        run = lambda: tok.encode(text).ids  # noqa: E731
    t0 = time.perf_counter()
    ids = run()
    cold = time.perf_counter() - t0
    best = min(_timed(run) for _ in range(iters))
    return {"load_ms": statistics.median(loads) * 1e3, "encode_cold_s": cold, "encode_s": best,
            "tokens": len(ids), "ids_fnv1a": fnv1a(ids)}


def _timed(f):
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


def ours_measure(bench, tok_path, text_path, iters, load_iters, docs):
    out = subprocess.run([bench, "tokenize", "--tokenizer", tok_path, "--text", text_path,
                          "--iters", str(iters), "--load-iters", str(load_iters), "--json"] +
                         (["--docs"] if docs else []),
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", default="build/tools/vlm-bench")
    ap.add_argument("--tokenizer", help="tokenizer.json (default: generate a 151k one)")
    ap.add_argument("--text", help="UTF-8 text file (default: generate mixed-script text)")
    ap.add_argument("--mb", type=float, default=20.0, help="size of the generated text")
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--load-iters", type=int, default=5)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="vlm-tokbench-")
    big = a.tokenizer
    if not big:
        big = os.path.join(tmp, "tokenizer-151k.json")
        subprocess.run([sys.executable, os.path.join(HERE, "gen_big_tokenizer.py"), big],
                       check=True)
    text_path = a.text
    if not text_path:
        text_path = os.path.join(tmp, "mixed.txt")
        with open(text_path, "w", encoding="utf-8") as f:
            f.write(make_mixed_text(int(a.mb * 1e6), seed=7))
    with open(text_path, encoding="utf-8") as f:
        text = f.read()
    nbytes = len(text.encode("utf-8"))
    ok = True
    print(f"text: {text_path}, {nbytes / 1e6:.2f} MB; RAYON_NUM_THREADS="
          f"{os.environ['RAYON_NUM_THREADS']}")
    runs = [(big, False), (big, True), (os.path.join(HERE, "data", "tokenizer.json"), True)]
    for tok_path, docs in runs:
        ours = ours_measure(a.bench, tok_path, text_path, a.iters, a.load_iters, docs)
        hf = hf_measure(tok_path, text, a.iters, a.load_iters, docs)
        same = ours["ids_fnv1a"] == hf["ids_fnv1a"] and ours["tokens"] == hf["tokens"]
        ok &= same
        mb = nbytes / 1e6
        mode = ("one call per paragraph (encode_batch, 1 thread)" if docs
                else "whole text as one string")
        print(f"\n{tok_path} ({ours['vocab']} ids), {mode}")
        print(f"  {'':14}{'vlmd':>12}{'HF tokenizers':>16}{'ratio':>10}")
        print(f"  {'load ms':14}{ours['load_ms']:12.1f}{hf['load_ms']:16.1f}"
              f"{ours['load_ms'] / hf['load_ms']:10.2f}  (vlmd/HF, lower is better)")
        print(f"  {'cold MB/s':14}{mb / ours['encode_cold_s']:12.2f}"
              f"{mb / hf['encode_cold_s']:16.2f}"
              f"{hf['encode_cold_s'] / ours['encode_cold_s']:10.2f}  (vlmd/HF, higher is better)")
        print(f"  {'warm MB/s':14}{mb / ours['encode_s']:12.2f}{mb / hf['encode_s']:16.2f}"
              f"{hf['encode_s'] / ours['encode_s']:10.2f}  (vlmd/HF, higher is better)")
        print(f"  tokens {ours['tokens']} vs {hf['tokens']}; ids identical: {same}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
