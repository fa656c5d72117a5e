#!/usr/bin/env python3
"""tests/peers/test_peers_json.py — tools/bench-peers-json.py on outputs recorded by a real run.

Why: the peer harness's verdict is arithmetic on two programs' outputs; a wrong mapping (fastest
step instead of mean, tg averaged per repetition, a missing round filled in) would skew every ratio
silently. data/run/ holds the stdout files of one real `tools/bench-peers.sh` run (vlm-bench,
llama-bench, llama-batched-bench: unedited); each check below re-derives a figure from the raw
numbers by its own parsing and compares, then damages a copy of the run to test the n/a paths.
"""
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("VLM_SRCDIR", os.path.join(HERE, "..", ".."))
TOOL = os.path.join(SRC, "tools", "bench-peers-json.py")
RUN = os.path.join(HERE, "data", "run")
FAILS = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        FAILS.append(what)


def assemble(rundir):
    p = subprocess.run([sys.executable, TOOL, rundir], capture_output=True, text=True, timeout=60)
    lines = p.stdout.splitlines()
    check(p.returncode == 0, f"bench-peers-json.py exits 0 ({p.stderr.strip()[:200]})")
    check(len(lines) == 1, "exactly one line on stdout")
    return json.loads(lines[0])


def close(a, b):
    return isinstance(a, (int, float)) and abs(a - b) <= 1e-3 * abs(b)


def meta():
    return json.load(open(os.path.join(RUN, "meta.json")))


def read(name):
    return open(os.path.join(RUN, name)).read()


def vlmd_means(name, key="mean_step_ms"):
    """batch -> B*1000/mean_step_ms, parsed with a regex (independent of the tool's parser)."""
    t = read(name)
    b = [int(x) for x in re.search(r'"batch":\[([0-9,]+)\]', t).group(1).split(",")]
    m = [float(x) for x in re.search(r'"' + key + r'":\[([^\]]+)\]', t).group(1).split(",")]
    return {bb: bb * 1000.0 / mm for bb, mm in zip(b, m)}


def main():
    R = meta()["rounds"]
    B = meta().get("batches", [8, 32])
    check(R >= 3, "the recorded run has at least 3 rounds")
    out = assemble(RUN)

    # vlmd decode b1: 1 / mean step, and that is not the fastest-step "tokens_per_s" figure
    exp = statistics.median(vlmd_means(f"r{r}.vlmd.bf16.decode1.out")[1] for r in range(1, R + 1))
    fast = statistics.median(vlmd_means(f"r{r}.vlmd.bf16.decode1.out", "step_ms")[1]
                             for r in range(1, R + 1))
    got = out["tok_s"]["vlmd"]["bf16"]["decode_b1"]
    check(close(got, exp), f"vlmd decode_b1 = median of 1000/mean_step_ms ({got} vs {exp:.4g})")
    check(not close(got, fast), f"vlmd decode_b1 is not the fastest-step rate ({fast:.4g})")

    # vlmd batched: B / mean step
    for b in B:
        exp = statistics.median(vlmd_means(f"r{r}.vlmd.bf16.decodeB.out")[b] for r in range(1, R + 1))
        got = out["tok_s"]["vlmd"]["bf16"][f"decode_b{b}"]
        check(close(got, exp), f"vlmd decode_b{b} = median of {b}*1000/mean_step_ms ({got} vs {exp:.4g})")

    # vlmd prefill: tokens / best seconds
    vals = []
    for r in range(1, R + 1):
        t = read(f"r{r}.vlmd.bf16.prefill.out")
        vals.append(float(re.search(r'"tokens":(\d+)', t).group(1)) /
                    float(re.search(r'"seconds":([0-9.e+-]+)', t).group(1)))
    got = out["tok_s"]["vlmd"]["bf16"]["prefill_512"]
    check(close(got, statistics.median(vals)), f"vlmd prefill_512 = tokens / seconds ({got})")

    # llama-bench: tg = sum n_gen / sum time; pp = best repetition
    tg, pp, tg_avg = [], [], []
    for r in range(1, R + 1):
        for line in read(f"r{r}.llama.bf16.bench.out").splitlines():
            if not line.startswith("{"):
                continue
            j = json.loads(line)
            ns = j["samples_ns"]
            if j["n_gen"] > 0:
                tg.append(j["n_gen"] * len(ns) * 1e9 / sum(ns))
                tg_avg.append(j["avg_ts"])
            else:
                pp.append(max(j["n_prompt"] * 1e9 / x for x in ns))
    check(len(tg) == R and len(pp) == R, "one tg and one pp record per round")
    got = out["tok_s"]["llama"]["bf16"]
    check(close(got["decode_b1"], statistics.median(tg)),
          f"llama decode_b1 = n_gen x reps / total time ({got['decode_b1']})")
    check(close(got["prefill_512"], statistics.median(pp)),
          f"llama prefill_512 = best repetition ({got['prefill_512']})")

    # llama-batched-bench: speed_tg = pl * tg / t_tg
    for b in B:
        v = []
        for r in range(1, R + 1):
            for line in read(f"r{r}.llama.bf16.batched.out").splitlines():
                if line.startswith("{") and json.loads(line)["pl"] == b:
                    j = json.loads(line)
                    v.append(j["pl"] * j["tg"] / j["t_tg"])
        check(close(got[f"decode_b{b}"], statistics.median(v)),
              f"llama decode_b{b} = pl*tg/t_tg ({got[f'decode_b{b}']})")

    # ratios are the quotient of the medians
    for m in ["decode_b1", "prefill_512"] + [f"decode_b{b}" for b in B]:
        rr = out["ratio"]["bf16"][m]
        check(close(rr, out["tok_s"]["vlmd"]["bf16"][m] / out["tok_s"]["llama"]["bf16"][m]),
              f"ratio bf16 {m} = vlmd / llama ({rr})")

    for b in (8, 32):
        if b not in B:
            v = out["ratio"]["bf16"][f"decode_b{b}"]
            check(isinstance(v, str) and v.startswith("n/a") and "not run" in v,
                  f"batch {b}, not in the run's --batches, is n/a 'not run' ({v!r})")

    # every pair the run measured is a number per metric, and the numbers are positive
    for key, pair in out["ratio"].items():
        if isinstance(pair, dict):
            for m, x in pair.items():
                check(isinstance(x, str) or x > 0, f"ratio {key} {m} is positive or n/a ({x!r})")

    with tempfile.TemporaryDirectory() as tmp:
        d = os.path.join(tmp, "run")
        shutil.copytree(RUN, d)
        # a format recorded as not available: the whole pair is one n/a string with the reason
        with open(os.path.join(d, "na.vlmd.int8"), "w") as f:
            f.write("vlm-bench has no --quantize option in this build\n")
        for r in range(1, R + 1):
            for k in ("decode1", "decodeB", "prefill"):
                p = os.path.join(d, f"r{r}.vlmd.int8.{k}.out")
                if os.path.exists(p):
                    os.unlink(p)
        # a failed run in one round: that metric is n/a, the others stay numbers
        os.unlink(os.path.join(d, "r2.llama.bf16.batched.out"))
        # gemm's renamed / extra keys must not matter; a missing mean_step_ms must not fall back
        p = os.path.join(d, "r1.vlmd.bf16.decode1.out")
        t = open(p).read().replace('"bench":"decode"', '"bench":"decode","new_floor_key":[1.5]')
        open(p, "w").write(t)
        o2 = assemble(d)
        i8 = o2["ratio"]["int8_vs_q8_0"]
        check(isinstance(i8, str) and i8.startswith("n/a") and "--quantize" in i8,
              f"int8 pair is one n/a string with the reason ({i8!r})")
        check(isinstance(o2["ratio"]["bf16"]["decode_b8"], str) and
              o2["ratio"]["bf16"]["decode_b8"].startswith("n/a") and "round 2" in o2["ratio"]["bf16"]["decode_b8"],
              "a missing round makes that metric n/a, naming the round")
        check(close(o2["ratio"]["bf16"]["prefill_512"], out["ratio"]["bf16"]["prefill_512"]),
              "the other metrics are unchanged")
        check(close(o2["tok_s"]["vlmd"]["bf16"]["decode_b1"], out["tok_s"]["vlmd"]["bf16"]["decode_b1"]),
              "an unknown extra key in vlm-bench's JSON changes nothing")
        t = open(p).read()
        t = re.sub(r',"mean_step_ms":\[[^\]]*\]', "", t)
        open(p, "w").write(t)
        o3 = assemble(d)
        v = o3["ratio"]["bf16"]["decode_b1"]
        check(isinstance(v, str) and "mean_step_ms" in v,
              f"without mean_step_ms decode_b1 is n/a, not the fastest step ({v!r})")

    # a quantized run that quantized nothing must not pass for an int8 figure
    if isinstance(out["ratio"].get("int8_vs_q8_0"), dict):
        with tempfile.TemporaryDirectory() as tmp:
            d = os.path.join(tmp, "run")
            shutil.copytree(RUN, d)
            p = os.path.join(d, "r1.vlmd.int8.decode1.out")
            t = re.sub(r'"quantized_weights":\d+', '"quantized_weights":0', open(p).read())
            open(p, "w").write(t)
            v = assemble(d)["ratio"]["int8_vs_q8_0"]["decode_b1"]
            check(isinstance(v, str) and "no quantized weights" in v,
                  f"an int8 run with quantized_weights 0 is n/a ({v!r})")
    else:
        check(False, "the recorded run has an int8 pair to test the quantized-weights guard")

    if FAILS:
        print(f"{len(FAILS)} check(s) failed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
