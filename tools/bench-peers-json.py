#!/usr/bin/env python3
"""tools/bench-peers-json.py — turn the raw outputs of one tools/bench-peers.sh run into its JSON line.

Why a separate script: the arithmetic that makes vlmd's and llama.cpp's figures the same quantity
lives in one place, reads only the files the run recorded (so a run can be re-assembled and
audited later), and is tested on recorded outputs (tests/peers) without building llama.cpp.

RUNDIR holds, per round N (1-based), engine E (vlmd | llama) and format F (vlmd: bf16 | int8 | q4;
llama: bf16 | q8_0 | q4_0):
  rN.vlmd.F.decode1.out   `vlm-bench decode --batch 1 --context 0 --steps TG --json` stdout
  rN.vlmd.F.decodeB.out   `vlm-bench decode --batch 8,32 --context PP --steps NTG --json` stdout
  rN.vlmd.F.prefill.out   `vlm-bench prefill --tokens 512 --json` stdout
  rN.llama.F.bench.out    `llama-bench -p 512 -n TG -o jsonl` stdout
  rN.llama.F.batched.out  `llama-batched-bench -npp PP -ntg NTG -npl 8,32 --output-format jsonl`
  na.vlmd.F / na.llama.F  one line: why that format was not run (then every figure of it is n/a)
  meta.json               what the run was (threads, rounds, flash attention, versions, loads)

The quantities (all tokens / s, each from wall time):
  decode_b1    vlmd: 1 / mean step time over TG steps from an empty cache (JSON mean_step_ms,
               never tokens_per_s, which is the fastest step);
               llama: llama-bench tg: TG tokens / wall time of generating them from an empty
               cache, over all repetitions (sum of n_gen / sum of samples_ns).
  decode_bB    vlmd: B / mean step time, B sequences after a PP-token prompt each;
               llama: llama-batched-bench speed_tg = B * NTG / time of the NTG steps.
  prefill_512  vlmd: 512 / fastest forward of the prompt (JSON seconds: best of --reps);
               llama: llama-bench pp512: 512 / fastest repetition (max of samples_ts).
Each figure is the median over rounds; a ratio is median(vlmd) / median(llama). A figure with no
measurement in some round is n/a with the reason; nothing is filled in.

usage: bench-peers-json.py RUNDIR
"""
import json
import os
import statistics
import sys

METRICS = ("decode_b1", "decode_b8", "decode_b32", "prefill_512")
# (vlmd format, llama format, key in the output)
PAIRS = (("bf16", "bf16", "bf16"), ("int8", "q8_0", "int8_vs_q8_0"), ("q4", "q4_0", "q4_vs_q4_0"))


def json_lines(path):
    """Every line of the file that parses as a JSON object (human lines are skipped)."""
    out = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                try:
                    v = json.loads(line)
                except ValueError:
                    continue
                if isinstance(v, dict):
                    out.append(v)
    return out


def num_list(v):
    if isinstance(v, list):
        return [float(x) for x in v]
    return [float(v)]


def vlmd_decode(path, fmt="bf16"):
    """{batch: tokens/s from the mean step} from a vlm-bench decode --json output. For a quantized
    format the run must say it quantized weights when vlm-bench reports that (quantized_weights):
    a silent fallback to bf16 must not pass for an int8 or 4-bit figure."""
    res = {}
    for j in json_lines(path):
        if j.get("bench") != "decode":
            continue
        if fmt != "bf16" and "quantized_weights" in j and int(j["quantized_weights"]) <= 0:
            raise ValueError(f"{os.path.basename(path)}: vlm-bench ran with no quantized weights")
        if fmt == "int8" and "quantize" in j and j["quantize"] != "int8":
            raise ValueError(f"{os.path.basename(path)}: vlm-bench ran with quantize={j['quantize']}")
        batches = num_list(j["batch"])
        if "mean_step_ms" not in j:
            raise ValueError(f"{os.path.basename(path)}: vlm-bench decode JSON has no mean_step_ms")
        ms = num_list(j["mean_step_ms"])
        for b, m in zip(batches, ms):
            if m > 0:
                res[int(b)] = b * 1e3 / m
    return res


def vlmd_prefill(path):
    for j in json_lines(path):
        if j.get("bench") != "prefill":
            continue
        if "seconds" in j and "tokens" in j and float(j["seconds"]) > 0:
            return int(j["tokens"]), float(j["tokens"]) / float(j["seconds"])
        if "tokens_per_s" in j:
            return int(j.get("tokens", 0)), float(j["tokens_per_s"])
    raise ValueError(f"{os.path.basename(path)}: no vlm-bench prefill JSON line")


def vlmd_prefill_figures(path):
    t, v = vlmd_prefill(path)
    return {f"prefill_{t}": v}


def llama_bench(path):
    """(pp tokens, best pp tokens/s, tg tokens/s from wall time) from llama-bench -o jsonl."""
    pp = tg = None
    for j in json_lines(path):
        if "samples_ns" not in j:
            continue
        ns = num_list(j["samples_ns"])
        n_p, n_g = int(j.get("n_prompt", 0)), int(j.get("n_gen", 0))
        if n_p > 0 and n_g == 0:
            pp = (n_p, max(n_p * 1e9 / x for x in ns if x > 0))
        elif n_g > 0 and n_p == 0:
            tg = n_g * len(ns) * 1e9 / sum(ns)
    return pp, tg


def llama_bench_figures(path):
    pp, tg = llama_bench(path)
    got = {}
    if pp:
        got[f"prefill_{pp[0]}"] = pp[1]
    if tg:
        got["decode_b1"] = tg
    return got


def llama_batched(path):
    """{batch: speed_tg} from llama-batched-bench --output-format jsonl."""
    res = {}
    for j in json_lines(path):
        if "pl" in j and "speed_tg" in j:
            res[int(j["pl"])] = float(j["speed_tg"])
    return res


def read_na(rundir, engine, fmt):
    p = os.path.join(rundir, f"na.{engine}.{fmt}")
    if os.path.exists(p):
        with open(p, encoding="utf-8", errors="replace") as f:
            return f.read().strip() or "not run"
    return None


def figures(rundir, engine, fmt, rounds, batches=None):
    """{metric: [value per round]} or {metric: "n/a: ..."}."""
    na = read_na(rundir, engine, fmt)
    if na is not None:
        return {m: "n/a: " + na for m in METRICS}
    skipped = {}
    if batches is not None:
        for m in METRICS:
            if m.startswith("decode_b") and m != "decode_b1" and int(m[8:]) not in batches:
                skipped[m] = "n/a: not run (--batches %s)" % ",".join(str(b) for b in batches)
    per = {m: [] for m in METRICS}
    missing = {}
    if engine == "vlmd":
        def dec(p):
            return {f"decode_b{b}": v for b, v in vlmd_decode(p, fmt).items()}
        parsers = (("decode1.out", dec), ("decodeB.out", dec),
                   ("prefill.out", vlmd_prefill_figures))
    else:
        parsers = (("bench.out", llama_bench_figures),
                   ("batched.out", lambda p: {f"decode_b{b}": v for b, v in llama_batched(p).items()
                                              if b != 1}))
    for r in range(1, rounds + 1):
        got, errs = {}, []
        base = os.path.join(rundir, f"r{r}.{engine}.{fmt}.")
        for suffix, parse in parsers:
            if not os.path.exists(base + suffix):
                continue
            try:
                got.update(parse(base + suffix))
            except (ValueError, KeyError, TypeError) as e:
                errs.append(str(e))
        for m in METRICS:
            if m in got:
                per[m].append(got[m])
            else:
                why = "; ".join(errs) if errs else f"no measurement (see {os.path.basename(base)}*)"
                missing.setdefault(m, f"round {r}: {why}")
    return {m: skipped[m] if m in skipped else ("n/a: " + missing[m]) if m in missing else per[m]
            for m in METRICS}


def median(v):
    return v if isinstance(v, str) else statistics.median(v)


def r4(x):
    return x if isinstance(x, str) else float(f"{x:.4g}")


def assemble(rundir):
    with open(os.path.join(rundir, "meta.json"), encoding="utf-8") as f:
        meta = json.load(f)
    rounds = int(meta["rounds"])
    tok = {"vlmd": {}, "llama": {}}
    ratio = {}
    for vf, lf, key in PAIRS:
        batches = meta.get("batches")
        v = {m: median(x) for m, x in figures(rundir, "vlmd", vf, rounds, batches).items()}
        ll = {m: median(x) for m, x in figures(rundir, "llama", lf, rounds, batches).items()}
        tok["vlmd"][vf] = {m: r4(x) for m, x in v.items()}
        tok["llama"][lf] = {m: r4(x) for m, x in ll.items()}
        rr = {}
        for m in METRICS:
            if isinstance(v[m], str) and v[m] == ll[m]:
                rr[m] = v[m]
            elif isinstance(v[m], str):
                rr[m] = "n/a (vlmd " + vf + "): " + v[m][5:]
            elif isinstance(ll[m], str):
                rr[m] = "n/a (llama.cpp " + lf + "): " + ll[m][5:]
            else:
                rr[m] = r4(v[m] / ll[m])
        # one reason for the whole format when nothing of it ran
        vals = list(rr.values())
        ratio[key] = vals[0] if all(isinstance(x, str) for x in vals) and len(set(vals)) == 1 else rr
    out = {"bench": "peers", "peer": "llama.cpp", "what": "vlmd / llama.cpp, tokens/s, median of rounds"}
    out["ratio"] = ratio
    out["tok_s"] = tok
    for k in ("rounds", "threads", "pp", "tg", "npp", "ntg", "batches", "flash_attn", "llama_poll", "kv", "peer_version", "model", "load_avg_start",
              "load_avg_end", "gguf_types", "date"):
        if k in meta:
            out[k] = meta[k]
    return out


def main(argv):
    if len(argv) != 1 or not os.path.isdir(argv[0]):
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    try:
        out = assemble(argv[0])
    except (OSError, ValueError, KeyError) as e:
        print(f"bench-peers-json.py: {e}", file=sys.stderr)
        return 1
    print(json.dumps(out, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
