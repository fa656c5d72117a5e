#!/usr/bin/env python3
"""tests/serve/images-shape-check.py — checks the image workload's shape accounting.

Reads the last line of `vlm-bench serve ... --json` (or `--describe-images`) on stdin and
  1. recounts every FLOP figure of each shape it carries (faithful, legacy, reference) from the
     printed model dimensions and conversation, counting weight matrices one by one, and requires
     the JSON's figures to agree (0.1%);
  2. with --proportions: requires the faithful shape's proportions (tower / image-token prefill,
     vision / decode per turn, caches on/off FLOP bound) within 10% of qwen2-vl-2b's under
     DashInfer-VLM's conversation, and the reference to be qwen2-vl-2b at a 60x60 grid;
  3. with --ran: requires the image phases to have run (positive QPS for every shape present,
     "failed": false).
"""
import json
import sys


def recount(s):
    m, c = s["model"], s["conversation"]
    h, L, q, kv, ff, V = (m[k] for k in ("hidden", "layers", "q_dim", "kv_dim",
                                          "intermediate", "vocab"))
    D, e, mlp = m["tower_depth"], m["tower_width"], m["tower_mlp"]
    side = int(c["grid"].split("x")[1])
    n = side * side
    run = n // 4                       # 2x2 merge
    assert run == c["image_tokens"], (run, c)
    # language model: per token and layer, the weight matrices q, k, v, o, gate, up, down
    mats = [(h, q), (h, kv), (h, kv), (q, h), (h, ff), (h, ff), (ff, h)]
    lin = sum(2 * a * b for a, b in mats)

    def span(a, b):                    # positions [a, b), causal attention 4*q per key
        return sum(L * (lin + 4 * q * (p + 1)) for p in range(a, b))

    lm_head = 2 * h * V
    # tower: patch embedding 1176 -> e; per block qkv, proj, fc1, fc2 and full attention;
    # merger: 4e -> 4e -> h per merged token
    blk = n * sum(2 * a * b for a, b in [(e, 3 * e), (e, e), (e, mlp), (mlp, e)]) + 4 * e * n * n
    tower = 2 * 1176 * e * n + D * blk + run * (2 * 4 * e * 4 * e + 2 * 4 * e * h)
    sys_, qn, ans, turns, imgs = (c[k] for k in ("system", "question", "answer", "turns",
                                                  "images"))
    p1 = sys_ + imgs * (run + 2) + qn
    img = sum(span(sys_ + k * (run + 2) + 1, sys_ + k * (run + 2) + 1 + run) for k in range(imgs))

    def dec(p):
        return span(p, p + ans) + ans * lm_head

    on = imgs * tower + span(0, p1)
    off = 0
    decs = 0
    for k in range(turns):
        pk = p1 + k * (ans + qn)
        if k:
            on += span(pk - qn, pk)
        off += imgs * tower + span(0, pk)
        decs += dec(pk)
    g = 1e-9
    return {
        "gflop_tower_per_image": tower * g,
        "gflop_prefill_per_image_token": img / (imgs * run) * g,
        "gflop_decode_per_token": dec(p1) / ans * g,
        "tower_over_image_prefill": tower / (img / imgs),
        "vision_over_decode_per_turn": (imgs * tower + img) / dec(p1),
        "gflop_conversation_caches_on": (on + decs) * g,
        "gflop_conversation_caches_off": (off + decs) * g,
        "flop_bound_cache_speedup": (off + decs) / (on + decs),
    }


def main():
    r = json.loads(sys.stdin.read().strip().splitlines()[-1])
    shapes = {k: r[k] for k in ("images_shape", "legacy_images_shape", "images_reference")
              if isinstance(r.get(k), dict)}
    if "images_reference" not in shapes or len(shapes) < 2:
        sys.exit("shapes missing: %s" % sorted(r))
    for name, s in shapes.items():
        for k, v in recount(s).items():
            # the JSON prints 4 significant digits (ratios 2-3 decimals)
            if abs(s[k] - v) > 1e-3 * abs(v) + 5e-3 * (k.endswith("speedup") or
                                                       k.startswith("tower_over")):
                sys.exit("%s.%s: printed %r, recounted %r" % (name, k, s[k], v))
    if "--proportions" in sys.argv:
        ref, f = shapes["images_reference"], shapes.get("images_shape")
        if not f:
            sys.exit("no faithful shape")
        if ref["model"]["hidden"] != 1536 or ref["model"]["layers"] != 28 or \
           ref["model"]["tower_depth"] != 32 or ref["conversation"]["grid"] != "1x60x60":
            sys.exit("reference is not qwen2-vl-2b on DashInfer's conversation: %r" % ref)
        for k in ("tower_over_image_prefill", "vision_over_decode_per_turn",
                  "flop_bound_cache_speedup"):
            if abs(f[k] / ref[k] - 1) > 0.10:
                sys.exit("faithful %s = %r, reference %r: more than 10%% apart" %
                         (k, f[k], ref[k]))
    if "--ran" in sys.argv:
        pre = [p for p in ("", "legacy_") if isinstance(r.get(p + "images_shape"), dict)]
        bad = [p + k for p in pre for k in ("images_qps_caches_on", "images_qps_caches_off",
                                            "images_qps_vision_cache_off", "images_cache_speedup")
               if not r.get(p + k, 0) > 0]
        if bad or r.get("failed") is not False:
            sys.exit("not positive %s, failed %r" % (bad, r.get("failed")))
    print("ok:", {n: {k: s[k] for k in ("tower_over_image_prefill", "vision_over_decode_per_turn",
                                          "flop_bound_cache_speedup")} for n, s in shapes.items()})


main()
