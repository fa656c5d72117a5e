#!/usr/bin/env python3
"""Write a GPTQ or AWQ copy of a safetensors checkpoint, by round-to-nearest quantization.

Why: vlmd loads GPTQ / AWQ checkpoints in their Hugging Face layouts without conversion; tests
and benchmarks need such checkpoints of known weights (random ones from vlm-mkmodel, or any
Qwen2 / Qwen2-VL folder) without torch, a GPU or a calibration set. This is not GPTQ's or AWQ's
algorithm (no Hessian, no activation-aware scaling): it is round-to-nearest, written in exactly
the published tensor layouts with a matching quantization_config, so a loader that reads them
right reproduces the dequantized weights bit for bit.

  python3 tools/quantwrite.py --format gptq|awq --bits 4 --group 128 [--desc-act] SRC DST

Quantized: the language model's Linear weights (q/k/v/o_proj, gate/up/down_proj of every layer).
Kept as they are: embeddings, lm_head, norms, biases, the vision tower (visual.*).

Layouts (W is the HF Linear weight [out, in], groups of --group input columns):
  gptq  qweight I32 [in / (32/bits), out]   input k of output n at bits * (k % (32/bits)) of
                                            qweight[k / (32/bits)][n]
        qzeros  I32 [groups, out * bits / 32] zero of (group g, output n) at bits * (n % (32/bits))
                                            of qzeros[g][n / (32/bits)]; stored as zero - 1 in the
                                            GPTQ "v1" format (checkpoint_format "gptq", AutoGPTQ,
                                            the Qwen GPTQ releases), as is with --gptq-v2
        scales  F16 [groups, out]
        g_idx   I32 [in]                    group of input k (desc_act: a permutation, so the
                                            groups are not contiguous)
        W[n][k] = scales[g][n] * (q - zero),  g = g_idx[k]
  awq   qweight I32 [in, out / 8]           (version "gemm") 8 outputs per word: nibble i of
                                            qweight[k][j] holds output 8j + [0,2,4,6,1,3,5,7][i]
        qzeros  I32 [groups, out / 8]       same packing, zeros as is
        scales  F16 [groups, out]
        W[n][k] = scales[k / group][n] * (q - zero)

Needs only numpy: the safetensors container is read and written here (numpy has no bfloat16,
and bf16 is vlm-mkmodel's default dtype). Deterministic: the same input gives the same bytes
(the desc_act permutation comes from --seed through a fixed integer hash, not numpy's RNG).
"""
import argparse
import json
import os
import re
import shutil
import struct
import sys

import numpy as np

LINEAR = re.compile(r"^(?!.*visual\.)(.*layers\.\d+\.(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj))"
                    r"\.weight$")
AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7]   # nibble i of a word holds output column AWQ_ORDER[i]
NP_OF = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64,
         "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_,
         "BF16": np.uint16}


# ---- safetensors container ----

def st_read(path):
    """{name: (dtype string, shape, raw bytes)} and the metadata dict."""
    with open(path, "rb") as f:
        data = f.read()
    (hlen,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + hlen])
    meta = header.pop("__metadata__", {}) or {}
    base = 8 + hlen
    out = {}
    for name, e in header.items():
        b, end = e["data_offsets"]
        out[name] = (e["dtype"], list(e["shape"]), data[base + b:base + end])
    return out, meta


def st_write(path, tensors, meta=None):
    """tensors: {name: (dtype string, shape, raw bytes)}; names sorted, 8-byte aligned data."""
    header = {}
    if meta:
        header["__metadata__"] = {str(k): str(v) for k, v in meta.items()}
    off = 0
    blobs = []
    for name in sorted(tensors):
        dt, shape, raw = tensors[name]
        header[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def to_f32(dt, shape, raw):
    if dt == "BF16":
        u = np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16
        return u.view(np.float32).reshape(shape)
    if dt not in ("F32", "F16", "F64"):
        raise SystemExit(f"quantwrite: a Linear weight of dtype {dt} (want F32, F16, BF16)")
    return np.frombuffer(raw, dtype=NP_OF[dt]).astype(np.float32).reshape(shape)


def read_checkpoint(src):
    idx = os.path.join(src, "model.safetensors.index.json")
    if os.path.exists(idx):
        files = sorted(set(json.load(open(idx))["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    tensors = {}
    for f in files:
        t, _ = st_read(os.path.join(src, f))
        for k in t:
            if k in tensors:
                raise SystemExit(f"quantwrite: tensor {k} is in two shards")
        tensors.update(t)
    return tensors, files


# ---- quantization (round to nearest) ----

def permutation(n, seed):
    """A permutation of range(n) from a 64-bit integer hash (splitmix64) of (seed, i)."""
    m = (1 << 64) - 1
    keys = []
    for i in range(n):
        z = (seed * 0x9E3779B97F4A7C15 + (i + 1) * 0xBF58476D1CE4E5B9) & m
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & m
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m
        keys.append((z ^ (z >> 31), i))
    return np.array([i for _, i in sorted(keys)], dtype=np.int64)


def rtn(wg, bits, sym):
    """Round-to-nearest of wg [out, gs]: (q uint [out, gs], scale f16 [out], zero int [out]).
    The scale is rounded to fp16 first (what the checkpoint stores), q computed against it."""
    maxq = (1 << bits) - 1
    if sym:   # GPTQ sym: zero (maxq + 1) / 2, range [-max|w|, max|w|]
        amax = np.abs(wg).max(axis=1)
        scale = 2 * amax / maxq
        zero = np.full(wg.shape[0], (maxq + 1) // 2, dtype=np.int64)
    else:     # asym, both ends kept (GPTQ includes 0 in the range, like AWQ's min/max)
        lo = np.minimum(wg.min(axis=1), 0)
        hi = np.maximum(wg.max(axis=1), 0)
        scale = (hi - lo) / maxq
        zero = None
    scale = np.where(scale > 0, scale, 1e-5).astype(np.float16)
    s32 = scale.astype(np.float32)
    if zero is None:
        zero = np.clip(np.rint(-lo / s32), 0, maxq).astype(np.int64)
    q = np.clip(np.rint(wg / s32[:, None]) + zero[:, None], 0, maxq).astype(np.int64)
    return q, scale, zero


def pack_cols(vals, bits, order=None):
    """vals [r, c] ints < 2^bits -> int32 [r, c * bits / 32], consecutive columns in one word
    (value of column 32/bits * j + order[i] at bit offset bits * i of word j)."""
    pf = 32 // bits
    r, c = vals.shape
    v = vals.reshape(r, c // pf, pf).astype(np.uint32)
    if order is not None:
        v = v[:, :, order]
    word = np.zeros((r, c // pf), dtype=np.uint32)
    for i in range(pf):
        word |= v[:, :, i] << np.uint32(bits * i)
    return word.view(np.int32)


def quant_gptq(w, bits, group, desc_act, sym, v2, seed):
    out_f, in_f = w.shape
    gs = in_f if group == -1 else group
    pf = 32 // bits
    if in_f % gs or in_f % pf or (out_f * bits) % 32:
        raise SystemExit(f"quantwrite: shape {list(w.shape)} does not fit bits {bits}, group {gs}")
    n_groups = in_f // gs
    if desc_act:   # storage order perm; input perm[j] is in group j // gs
        perm = permutation(in_f, seed)
        g_idx = np.empty(in_f, dtype=np.int32)
        g_idx[perm] = np.arange(in_f) // gs
    else:
        g_idx = (np.arange(in_f) // gs).astype(np.int32)
    q = np.zeros((out_f, in_f), dtype=np.int64)
    scales = np.zeros((n_groups, out_f), dtype=np.float16)
    zeros = np.zeros((n_groups, out_f), dtype=np.int64)
    maxq = (1 << bits) - 1
    for g in range(n_groups):
        cols = np.nonzero(g_idx == g)[0]
        qg, s, z = rtn(w[:, cols], bits, sym)
        if not v2:   # v1 stores zero - 1: a zero of 0 would wrap, keep it >= 1 (re-round)
            z1 = np.maximum(z, 1)
            if (z1 != z).any():
                qg = np.clip(np.rint(w[:, cols] / s.astype(np.float32)[:, None]) + z1[:, None],
                             0, maxq).astype(np.int64)
                z = z1
        q[:, cols] = qg
        scales[g] = s
        zeros[g] = z
    # qweight packs along the input dimension: [in / pf, out]
    qt = q.T.reshape(in_f // pf, pf, out_f).astype(np.uint32)
    qw = np.zeros((in_f // pf, out_f), dtype=np.uint32)
    for i in range(pf):
        qw |= qt[:, i, :] << np.uint32(bits * i)
    qweight = qw.view(np.int32)
    stored = zeros if v2 else (zeros - 1) & maxq
    qzeros = pack_cols(stored, bits)
    return {"qweight": qweight, "qzeros": qzeros, "scales": scales, "g_idx": g_idx}


def quant_awq(w, bits, group):
    out_f, in_f = w.shape
    gs = in_f if group == -1 else group
    if bits != 4 or in_f % gs or out_f % 8:
        raise SystemExit(f"quantwrite: awq wants bits 4, group | in, 8 | out: {list(w.shape)}")
    n_groups = in_f // gs
    q = np.zeros((out_f, in_f), dtype=np.int64)
    scales = np.zeros((n_groups, out_f), dtype=np.float16)
    zeros = np.zeros((n_groups, out_f), dtype=np.int64)
    for g in range(n_groups):
        qg, s, z = rtn(w[:, g * gs:(g + 1) * gs], 4, False)
        q[:, g * gs:(g + 1) * gs] = qg
        scales[g] = s
        zeros[g] = z
    return {"qweight": pack_cols(q.T.copy(), 4, AWQ_ORDER),
            "qzeros": pack_cols(zeros, 4, AWQ_ORDER), "scales": scales}


def np_entry(a):
    dt = {np.dtype(np.int32): "I32", np.dtype(np.float16): "F16", np.dtype(np.float32): "F32"}[a.dtype]
    return (dt, list(a.shape), np.ascontiguousarray(a).tobytes())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--format", choices=["gptq", "awq"], required=True)
    ap.add_argument("--bits", type=int, choices=[4, 8], default=4)
    ap.add_argument("--group", type=int, default=128, help="input columns per group; -1: whole row")
    ap.add_argument("--desc-act", action="store_true", help="gptq: act-order g_idx (a permutation)")
    ap.add_argument("--asym", action="store_true", help="gptq: asymmetric (sym is the default)")
    ap.add_argument("--gptq-v2", action="store_true",
                    help="gptq: checkpoint_format gptq_v2 (zeros stored as is, not minus one)")
    ap.add_argument("--seed", type=int, default=0, help="desc_act permutation seed")
    ap.add_argument("src")
    ap.add_argument("dst")
    a = ap.parse_args(argv)
    if a.format == "awq" and (a.bits != 4 or a.desc_act or a.gptq_v2):
        ap.error("awq: 4 bits, no --desc-act / --gptq-v2")
    if a.group != -1 and a.group < 1:
        ap.error("--group: a positive count or -1")

    cfg = json.load(open(os.path.join(a.src, "config.json")))
    tensors, files = read_checkpoint(a.src)
    out = {}
    n_q = 0
    for idx, name in enumerate(sorted(tensors)):
        dt, shape, raw = tensors[name]
        m = LINEAR.match(name)
        if not m:
            out[name] = (dt, shape, raw)
            continue
        w = to_f32(dt, shape, raw)
        prefix = m.group(1)
        if a.format == "gptq":
            parts = quant_gptq(w, a.bits, a.group, a.desc_act, not a.asym, a.gptq_v2,
                               a.seed * 1000003 + idx)
        else:
            parts = quant_awq(w, a.bits, a.group)
        for k, v in parts.items():
            out[f"{prefix}.{k}"] = np_entry(v)
        n_q += 1
    if not n_q:
        raise SystemExit("quantwrite: no Linear weight of a language-model layer found")

    if a.format == "gptq":
        qc = {"quant_method": "gptq", "bits": a.bits, "group_size": a.group,
              "desc_act": a.desc_act, "sym": not a.asym, "static_groups": False,
              "true_sequential": True, "damp_percent": 0.01,
              "checkpoint_format": "gptq_v2" if a.gptq_v2 else "gptq"}
    else:
        qc = {"quant_method": "awq", "bits": 4, "group_size": a.group, "version": "gemm",
              "zero_point": True, "modules_to_not_convert": ["visual"]}
    cfg["quantization_config"] = qc

    os.makedirs(a.dst, exist_ok=True)
    skip = set(files) | {"model.safetensors.index.json", "config.json"}
    for f in sorted(os.listdir(a.src)):
        p = os.path.join(a.src, f)
        if f not in skip and os.path.isfile(p):
            shutil.copyfile(p, os.path.join(a.dst, f))
    st_write(os.path.join(a.dst, "model.safetensors"), out, {"format": "pt"})
    with open(os.path.join(a.dst, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    print(f"quantwrite: {n_q} Linear weights -> {a.format} {a.bits}-bit, group {a.group}"
          f"{', desc_act' if a.desc_act else ''} in {a.dst}", file=sys.stderr)


if __name__ == "__main__":
    main()
