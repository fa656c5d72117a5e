#!/usr/bin/env python3
"""Reference outputs of quantized checkpoints for the model suite (test-model-reference).

Each checkpoint is a small random-weight f32 Qwen2 / Qwen2-VL checkpoint from vlm-mkmodel,
then either
  - written in a GPTQ or AWQ layout by tools/quantwrite.py (what vlmd loads), or
  - left as is and loaded by vlmd with --quantize int8 (quantize: "int8").
The reference model is transformers' own Qwen2ForCausalLM / Qwen2VLForConditionalGeneration in
fp32 on the DEQUANTIZED weights, computed here by a dequantizer written from the published
format definitions (not quantwrite's inverse: a loader that shares quantwrite's misreading of a
layout would otherwise pass), cross-checked against AutoAWQ's own dequantize_gemm when the
autoawq package is importable. GPTQ facts come from gptqmodel's QuantLinear.dequantize_weight
and convert_gptq_v1_to_v2_format_module (v1 stores zero - 1): docs/QUANTIZATION.md.

For every prompt the fixture holds the reference logits at every prompt position (P.logits, the
dequantized model), the same for the unquantized fp32 model (P.logits_fp32: the quantization
drift), and 32 greedy tokens of the dequantized model (P.greedy). The manifest records the drift
(|logprob of the fp32 model's top-1 token| differences) per checkpoint.

usage: gen_quant_reference.py --mkmodel BUILD/tools/vlm-mkmodel [--python /usr/bin/python3]
Needs: torch, transformers, numpy, safetensors (the reference venv). quantwrite.py runs under
--python (default: the system python3, the one the test runs it with, so the checkpoint
hashes in the manifest are the ones the test sees).
"""
import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zlib

import numpy as np
import torch
import transformers
from safetensors.numpy import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import gen_reference as gr   # noqa: E402  (prompts, run_prompt, fnv1a64)

QUANTWRITE = os.path.join(ROOT, "tools", "quantwrite.py")

CHECKPOINTS = [
    # name, vlm-mkmodel args, quantwrite args (None: --quantize int8), rel tol of the logits
    ("gptq4-g32-sym", ["--preset", "tiny-qwen2", "--dtype", "f32", "--seed", "21"],
     ["--format", "gptq", "--bits", "4", "--group", "32"], 1e-4),
    ("gptq4-g64-act-asym", ["--preset", "tiny-qwen2", "--dtype", "f32", "--seed", "22",
                            "--no-tie"],
     ["--format", "gptq", "--bits", "4", "--group", "64", "--desc-act", "--asym",
      "--seed", "5"], 1e-4),
    ("gptq8-row-v2", ["--preset", "tiny-qwen2", "--dtype", "f32", "--seed", "23"],
     ["--format", "gptq", "--bits", "8", "--group", "-1", "--asym", "--gptq-v2"], 1e-4),
    ("awq4-g32-vl", ["--preset", "tiny", "--dtype", "f32", "--seed", "24", "--new-names"],
     ["--format", "awq", "--bits", "4", "--group", "32"], 1e-4),
    ("int8-qwen2", ["--preset", "tiny-qwen2", "--dtype", "f32", "--seed", "25"], None, 1e-4),
]
VL_PROMPTS = ("text", "img_middle")
# The int8 drift bound the test asserts, and why (docs/QUANTIZATION.md).
INT8_DRIFT_BOUND = 0.05
INT8_DRIFT_REASON = ("per-channel int8 moves a weight by <= max|w|/254; on these models that "
                     "moves a top-1 logprob by <= 0.034 nats in transformers itself; vlmd must "
                     "match that reference within its 1e-4 logits tolerance")


# ---- dequantization from the format definitions ----

def field(words, shift, bits):
    """(words >> shift) & (2^bits - 1) on uint32 words."""
    return (words.view(np.uint32) >> np.uint32(shift)) & np.uint32((1 << bits) - 1)


def deq_gptq(qweight, qzeros, scales, g_idx, bits, v1):
    """W [out, in] from GPTQ tensors: input k of output n is field k % (32/bits) of
    qweight[k // (32/bits), n]; zero of (g, n) is field n % (32/bits) of qzeros[g, n // (32/bits)],
    plus one in the v1 format; W[n, k] = scales[g, n] * (q - zero), g = g_idx[k]."""
    pf = 32 // bits
    n_in, n_out = qweight.shape[0] * pf, qweight.shape[1]
    q = np.stack([field(qweight[k // pf], bits * (k % pf), bits) for k in range(n_in)])
    z = np.stack([field(qzeros[:, n // pf], bits * (n % pf), bits) for n in range(n_out)], axis=1)
    z = z.astype(np.int64) + (1 if v1 else 0)
    g = g_idx.astype(np.int64)
    w = scales.astype(np.float32)[g] * (q.astype(np.int64) - z[g]).astype(np.float32)
    return np.ascontiguousarray(w.T)


AWQ_PACK_ORDER = [0, 2, 4, 6, 1, 3, 5, 7]   # AutoAWQ's pack: nibble i <- column 8j + order[i]


def deq_awq(qweight, qzeros, scales, group):
    """W [out, in] from AWQ GEMM tensors: output n of input k is nibble i of qweight[k, n // 8]
    with AWQ_PACK_ORDER[i] == n % 8; zeros likewise; W[n, k] = scales[k // g, n] * (q - z)."""
    n_in, n_out = qweight.shape[0], qweight.shape[1] * 8
    nib = [AWQ_PACK_ORDER.index(n % 8) for n in range(n_out)]
    q = np.stack([field(qweight[:, n // 8], 4 * nib[n], 4) for n in range(n_out)], axis=1)
    z = np.stack([field(qzeros[:, n // 8], 4 * nib[n], 4) for n in range(n_out)], axis=1)
    g = np.arange(n_in) // (n_in if group == -1 else group)
    w = scales.astype(np.float32)[g] * (q.astype(np.int64) - z.astype(np.int64)[g]).astype(np.float32)
    return np.ascontiguousarray(w.T)


def autoawq_dequantizer():
    """AutoAWQ's dequantize_gemm (pure torch), loaded from its file: the package's __init__
    imports datasets & co., which a CPU venv need not have. None if autoawq is missing."""
    spec = importlib.util.find_spec("awq")
    if not spec or not spec.submodule_search_locations:
        return None, None
    path = os.path.join(list(spec.submodule_search_locations)[0], "utils", "packing_utils.py")
    if not os.path.exists(path):
        return None, None
    s = importlib.util.spec_from_file_location("awq_packing_utils", path)
    mod = importlib.util.module_from_spec(s)
    s.loader.exec_module(mod)
    from importlib.metadata import version
    return mod.dequantize_gemm, "autoawq %s awq/utils/packing_utils.py dequantize_gemm" % version("autoawq")


def int8_rows(w):
    """--quantize int8 as documented: per output row, scale = max|w| / 127 (f32), values
    round-half-even(w / scale) in [-127, 127]; dequantized = value * scale."""
    w = w.astype(np.float32)
    amax = np.abs(w).max(axis=1)
    scale = np.where(amax > 0, amax / np.float32(127), np.float32(1)).astype(np.float32)
    v = np.clip(np.rint(w / scale[:, None]), -127, 127)
    return (v.astype(np.float64) * scale[:, None].astype(np.float64)).astype(np.float32)


def dequantized_dir(qdir, out, qc, awq_ref):
    """Write a float checkpoint of qdir's weights, dequantized, into out. Returns the count of
    layers AutoAWQ's dequantizer was compared on."""
    t = load_file(os.path.join(qdir, "model.safetensors"))
    res = {}
    checked = 0
    for name, a in t.items():
        for suffix in (".qzeros", ".scales", ".g_idx"):
            if name.endswith(suffix):
                break
        else:
            if name.endswith(".qweight"):
                p = name[:-len(".qweight")]
                if qc["quant_method"] == "gptq":
                    n_in = a.shape[0] * (32 // qc["bits"])
                    g_idx = t.get(p + ".g_idx")
                    if g_idx is None:
                        g_idx = np.arange(n_in) // (n_in if qc["group_size"] == -1 else qc["group_size"])
                    w = deq_gptq(a, t[p + ".qzeros"], t[p + ".scales"], g_idx, qc["bits"],
                                 qc.get("checkpoint_format", "gptq") == "gptq")
                else:
                    w = deq_awq(a, t[p + ".qzeros"], t[p + ".scales"], qc["group_size"])
                    if awq_ref:
                        theirs = awq_ref(torch.from_numpy(a), torch.from_numpy(t[p + ".qzeros"]),
                                         torch.from_numpy(t[p + ".scales"].astype(np.float32)), 4,
                                         qc["group_size"])
                        # theirs is [in, out]
                        assert np.array_equal(theirs.numpy().T, w), p
                        checked += 1
                res[p + ".weight"] = w
            else:
                res[name] = a
    os.makedirs(out, exist_ok=True)
    save_file(res, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    cfg = json.load(open(os.path.join(qdir, "config.json")))
    cfg.pop("quantization_config", None)
    json.dump(cfg, open(os.path.join(out, "config.json"), "w"))
    return checked


def load_model(d):
    cfg = json.load(open(os.path.join(d, "config.json")))
    arch = cfg["architectures"][0]
    cls = {"Qwen2ForCausalLM": transformers.Qwen2ForCausalLM,
           "Qwen2VLForConditionalGeneration": transformers.Qwen2VLForConditionalGeneration}[arch]
    m = cls.from_pretrained(d, dtype=torch.float32, attn_implementation="eager")
    m.eval()
    return m, arch != "Qwen2ForCausalLM"


def int8_model(d):
    """The checkpoint in d with every Linear weight of the layers and the output head replaced by
    its int8-dequantized copy (the head untied from the embedding, which stays as stored)."""
    m, vl = load_model(d)
    lm = m.model.language_model if vl else m.model
    with torch.no_grad():
        for layer in lm.layers:
            for mod in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj,
                        layer.self_attn.o_proj, layer.mlp.gate_proj, layer.mlp.up_proj,
                        layer.mlp.down_proj):
                mod.weight.copy_(torch.from_numpy(int8_rows(mod.weight.numpy())))
        head = int8_rows(m.lm_head.weight.detach().numpy())
        m.lm_head.weight = torch.nn.Parameter(torch.from_numpy(head))
    assert not np.array_equal(m.lm_head.weight.detach().numpy(),
                              m.get_input_embeddings().weight.detach().numpy())
    return m, vl


def logprobs(logits):
    x = logits.astype(np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def drift(q_logits, f_logits):
    """|logprob of the fp32 model's top-1 token|, quantized vs fp32, over positions."""
    lq, lf = logprobs(q_logits), logprobs(f_logits)
    top = lf.argmax(axis=-1)
    d = np.abs(lq[np.arange(len(top)), top] - lf[np.arange(len(top)), top])
    return d


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mkmodel", required=True)
    ap.add_argument("--python", default="/usr/bin/python3")
    ap.add_argument("--out", default=os.path.join(HERE, "quant-reference"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(0)
    awq_ref, awq_ref_name = autoawq_dequantizer()
    np_ver = subprocess.run([args.python, "-c", "import numpy; print(numpy.__version__)"],
                            check=True, capture_output=True, text=True).stdout.strip()
    manifest = {
        "generator": "tests/model/gen_quant_reference.py",
        "transformers": transformers.__version__, "torch": torch.__version__,
        "quantwrite_numpy": np_ver,
        "awq_crosscheck": awq_ref_name or "none (autoawq not importable)",
        "greedy_tokens": gr.GREEDY, "checkpoints": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name, mkargs, qargs, tol in CHECKPOINTS:
            src = os.path.join(tmp, name + "-src")
            subprocess.run([args.mkmodel] + mkargs + [src], check=True)
            if qargs:
                d = os.path.join(tmp, name)
                subprocess.run([args.python, QUANTWRITE] + qargs + [src, d], check=True)
                # the same bytes under this interpreter's numpy (the test's may differ)
                d2 = os.path.join(tmp, name + "-venv")
                subprocess.run([sys.executable, QUANTWRITE] + qargs + [src, d2], check=True)
                for f in os.listdir(d):
                    assert gr.fnv1a64(os.path.join(d, f)) == gr.fnv1a64(os.path.join(d2, f)), f
                qc = json.load(open(os.path.join(d, "config.json")))["quantization_config"]
                deq = os.path.join(tmp, name + "-deq")
                checked = dequantized_dir(d, deq, qc, awq_ref)
                for f in os.listdir(src):   # tokenizer & co. for from_pretrained
                    if not os.path.exists(os.path.join(deq, f)) and f.endswith(".json"):
                        shutil.copyfile(os.path.join(src, f), os.path.join(deq, f))
                model, vl = load_model(deq)
            else:
                d = src
                checked = 0
                model, vl = int8_model(src)
            fmodel, _ = load_model(src)
            files = {f: gr.fnv1a64(os.path.join(d, f)) for f in sorted(os.listdir(d))}
            hidden = model.get_input_embeddings().weight.shape[1]
            rng = np.random.default_rng(zlib.crc32(name.encode()))
            prompts = gr.vl_prompts(rng) if vl else gr.qwen2_prompts(rng)
            if vl:
                prompts = [p for p in prompts if p[0] in VL_PROMPTS]
            tensors, names, drifts = {}, [], []
            greedy_same = 0
            for pname, tokens, items in prompts:
                embs = [rng.standard_normal((gr.rows_of(it), hidden)).astype(np.float32)
                        for it in items]
                pos, delta, logits, greedy, margin = gr.run_prompt(model, vl, tokens, items, embs)
                _, _, flogits, fgreedy, _ = gr.run_prompt(fmodel, vl, tokens, items, embs)
                if margin < 1e-3:
                    print(f"warning: {name}/{pname}: greedy top-2 margin {margin:.2e}",
                          file=sys.stderr)
                tensors[f"{pname}.tokens"] = np.array(tokens, dtype=np.int32)
                tensors[f"{pname}.items"] = np.array(
                    [[it[0], gr.rows_of(it), it[1], it[2], it[3]] for it in items],
                    dtype=np.int32).reshape(-1, 5)
                for j, e in enumerate(embs):
                    tensors[f"{pname}.emb{j}"] = e
                tensors[f"{pname}.pos"] = np.ascontiguousarray(pos)
                tensors[f"{pname}.delta"] = np.array([delta], dtype=np.int32)
                tensors[f"{pname}.logits"] = logits.astype(np.float32)
                tensors[f"{pname}.logits_fp32"] = flogits.astype(np.float32)
                tensors[f"{pname}.greedy"] = np.array(greedy, dtype=np.int32)
                drifts.append(drift(logits, flogits))
                greedy_same += int(greedy == fgreedy)
                names.append(pname)
                print(f"{name}/{pname}: {len(tokens)} tokens, greedy margin {margin:.3g}, drift "
                      f"max {drifts[-1].max():.4f} mean {drifts[-1].mean():.4f}, greedy "
                      f"{'= fp32' if greedy == fgreedy else '!= fp32'}")
            fixture = f"{name}.safetensors"
            save_file(tensors, os.path.join(args.out, fixture),
                      metadata={"prompts": ",".join(names), "checkpoint": name})
            alld = np.concatenate(drifts)
            entry = {
                "name": name, "mkmodel_args": mkargs, "files": files, "fixture": fixture,
                "rel_tol": tol, "prompts": names,
                "drift_vs_fp32": {"max_abs_logprob_top1": round(float(alld.max()), 5),
                                  "mean_abs_logprob_top1": round(float(alld.mean()), 5),
                                  "greedy_32_same_as_fp32": f"{greedy_same}/{len(names)}"},
            }
            if qargs:
                entry["quantwrite_args"] = qargs
                if checked:
                    entry["awq_crosschecked_layers"] = checked
            else:
                entry["quantize"] = "int8"
                entry["drift_bound"] = INT8_DRIFT_BOUND
                entry["drift_bound_reason"] = INT8_DRIFT_REASON
                assert alld.max() < INT8_DRIFT_BOUND, alld.max()
            manifest["checkpoints"].append(entry)
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
