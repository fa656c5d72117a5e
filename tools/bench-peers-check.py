#!/usr/bin/env python3
"""tools/bench-peers-check.py — prove a GGUF file holds the same weights as a safetensors checkpoint.

Why: the peer comparison is only fair if llama.cpp runs the very checkpoint vlmd runs. This reads
every tensor of DIR/*.safetensors (bf16, f16 or f32; header parsed here, data read raw), maps its
Hugging Face name to the GGUF name with the gguf package's own name table, and compares values
exactly after widening both sides to float32 (the converter keeps 1-D tensors in f32; bf16 -> f32
is exact). Every checkpoint tensor must appear once, equal, and the GGUF must hold nothing else.

  bench-peers-check.py equal DIR FILE.gguf   exit 0 and a JSON line when all tensors are equal
  bench-peers-check.py types FILE.gguf       JSON line {"TYPE": tensor count, ...}

Needs numpy and the gguf package (llama.cpp's gguf-py).
"""
import glob
import json
import os
import struct
import sys

import numpy as np
import gguf


def safetensors_tensors(d):
    """name -> float32 array, for every tensor of every DIR/*.safetensors."""
    out = {}
    for path in sorted(glob.glob(os.path.join(d, "*.safetensors"))):
        with open(path, "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            hdr = json.loads(f.read(n))
            base = 8 + n
            for name, t in hdr.items():
                if name == "__metadata__":
                    continue
                a, b = t["data_offsets"]
                f.seek(base + a)
                raw = f.read(b - a)
                shape = tuple(t["shape"])
                if t["dtype"] == "BF16":
                    v = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
                elif t["dtype"] == "F16":
                    v = np.frombuffer(raw, "<f2").astype(np.float32)
                elif t["dtype"] == "F32":
                    v = np.frombuffer(raw, "<f4").copy()
                else:
                    raise SystemExit(f"{path}: {name}: dtype {t['dtype']} not handled")
                out[name] = v.reshape(shape)
    if not out:
        raise SystemExit(f"{d}: no *.safetensors")
    return out


def gguf_f32(t):
    """A GGUF tensor's values as float32 in its numpy shape (outermost dimension first)."""
    shape = tuple(int(x) for x in reversed(t.shape))
    if t.tensor_type == gguf.GGMLQuantizationType.BF16:
        u = np.frombuffer(t.data.tobytes(), "<u2").astype(np.uint32) << 16
        return u.view(np.float32).reshape(shape)
    if t.tensor_type in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16):
        return np.asarray(t.data, dtype=np.float32).reshape(shape)
    raise SystemExit(f"{t.name}: type {t.tensor_type.name} is not a plain float type")


def cmd_equal(d, path):
    st = safetensors_tensors(d)
    r = gguf.GGUFReader(path)
    arch_name = r.fields["general.architecture"]
    arch_name = bytes(arch_name.parts[arch_name.data[0]]).decode()
    arch = next(a for a, n in gguf.MODEL_ARCH_NAMES.items() if n == arch_name)
    n_blocks = 1 + max(int(k.split(".")[2]) for k in st if ".layers." in k)
    tmap = gguf.get_tensor_name_map(arch, n_blocks)
    gt = {t.name: t for t in r.tensors}
    seen, bad, types = set(), [], {}
    for name, v in st.items():
        g = tmap.get_name(name, try_suffixes=(".weight", ".bias"))
        if g is None or g not in gt:
            bad.append(f"{name}: no GGUF tensor ({g})")
            continue
        seen.add(g)
        w = gguf_f32(gt[g])
        types[gt[g].tensor_type.name] = types.get(gt[g].tensor_type.name, 0) + 1
        if w.shape != v.shape:
            bad.append(f"{name} -> {g}: shape {w.shape} != {v.shape}")
        elif not np.array_equal(w, v):
            bad.append(f"{name} -> {g}: {int(np.sum(w != v))} values differ")
    extra = sorted(set(gt) - seen)
    if extra:
        bad.append(f"GGUF tensors not in the checkpoint: {extra[:5]}")
    print(json.dumps({"check": "gguf_equal", "gguf": os.path.basename(path), "tensors": len(st),
                      "equal": len(st) - len([b for b in bad if "->" in b or "no GGUF" in b]),
                      "types": types, "ok": not bad}))
    for b in bad[:20]:
        print(f"bench-peers-check.py: {b}", file=sys.stderr)
    return 0 if not bad else 1


def cmd_types(path):
    r = gguf.GGUFReader(path)
    types = {}
    for t in r.tensors:
        types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + 1
    emb = next((t.tensor_type.name for t in r.tensors if t.name == "token_embd.weight"), None)
    print(json.dumps({"gguf": os.path.basename(path), "types": types, "token_embd": emb}))
    return 0


def main(argv):
    if len(argv) == 3 and argv[0] == "equal":
        return cmd_equal(argv[1], argv[2])
    if len(argv) == 2 and argv[0] == "types":
        return cmd_types(argv[1])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
