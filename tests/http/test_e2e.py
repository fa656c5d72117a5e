"""Images through vlm-serve with the official openai client give transformers' tokens: the image
cases of tests/vision/e2e.json (committed images + a prompt; input ids and 32 greedy tokens from
transformers' processor -> generate on random weights, written by gen_e2e_reference.py) are sent
as OpenAI chat messages (file:// paths and data URLs) to vlm-serve on the same checkpoint
(vlm-mkmodel with the fixture's arguments and the fixture's tokenizer), for Qwen2-VL and
Qwen2.5-VL. Checked per case:
  - usage.prompt_tokens == len(input_ids): the chat template and the pad count from the real
    grid give transformers' prompt length;
  - the 32 completion tokens, read back as the bytes of each token in `logprobs.content`, are
    the bytes of transformers' 32 token ids (byte-level BPE: one byte string per id);
  - cold (vision cache empty), warm (the same request again: cached prompt tokens reported), and
    all cases at once beside two text-only requests (the text answers equal their solo ones)."""

import base64
import json
import os
from concurrent.futures import ThreadPoolExecutor

from openai import OpenAI

from harness import Stack, TOKENIZER, check, env, run

VDIR = os.path.join(env("VLM_SRCDIR"), "tests", "vision")
with open(os.path.join(VDIR, "e2e.json")) as _f:
    FX = json.load(_f)


def byte_decoder():
    """GPT-2's byte-level alphabet inverted: the printable character standing for each byte ->
    that byte (bytes 33-126, 161-172, 174-255 stand for themselves; the other 68 bytes map to
    code points 256, 257, ... in byte order)."""
    keep = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    chars, n = {}, 0
    for b in range(256):
        if b in keep:
            chars[chr(b)] = b
        else:
            chars[chr(256 + n)] = b
            n += 1
    return chars


def token_bytes():
    """id -> the token's bytes, from the fixture's tokenizer.json (vocabulary and added tokens)."""
    with open(TOKENIZER) as f:
        tj = json.load(f)
    dec = byte_decoder()
    out = {i: bytes(dec[ch] for ch in t) for t, i in tj["model"]["vocab"].items()}
    for a in tj.get("added_tokens", []):
        out[a["id"]] = a["content"].encode()
    return out


TB = token_bytes()


def image_cases(model):
    return [c for c in FX["cases"] if c["model"] == model and
            all("image" in m for m in c["media"])]


def messages(c, form):
    parts = []
    for m in c["media"]:
        path = os.path.join(VDIR, "images", m["image"])
        if form == "file":
            url = "file://" + path
        else:
            with open(path, "rb") as f:
                url = "data:image/x;base64," + base64.b64encode(f.read()).decode()
        parts.append({"type": "image_url", "image_url": {"url": url}})
    parts.append({"type": "text", "text": c["prompt"]})
    return [{"role": "user", "content": parts}]


def ask(client, c, form):
    return client.chat.completions.create(
        model="model", messages=messages(c, form), temperature=0,
        max_completion_tokens=FX["n_tokens"], logprobs=True, extra_body={"ignore_eos": True})


def same_as_transformers(r, c, what):
    want = [TB[t] for t in c["tokens"]]
    got = [bytes(e.bytes) for e in (r.choices[0].logprobs.content or [])]
    check(r.usage.prompt_tokens == len(c["input_ids"]),
          "%s: prompt %d tokens, transformers %d" % (what, r.usage.prompt_tokens,
                                                    len(c["input_ids"])))
    check(r.usage.completion_tokens == len(want) and got == want,
          "%s: tokens differ from transformers at %s:\n got %r\nwant %r" %
          (what, next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), len(got)),
           got, want))


def one_model(model):
    args = FX["models"][model]["mkmodel_args"]
    cases = image_cases(model)
    check(len(cases) >= 3, "%s: %d image cases in e2e.json" % (model, len(cases)))
    with Stack(mkmodel_args=args, serve_args=["--allowed-local-media-path",
                                              os.path.join(VDIR, "images")]) as s:
        cl = OpenAI(base_url=s.url + "/v1", api_key="unused", max_retries=0)
        for c in cases:   # cold, as file:// paths
            same_as_transformers(ask(cl, c, "file"), c, "%s %s cold" % (model, c["name"]))
        for c in cases:   # warm, as data URLs (the same image bytes)
            r = ask(cl, c, "data")
            same_as_transformers(r, c, "%s %s warm" % (model, c["name"]))
            check(r.usage.prompt_tokens_details.cached_tokens > 0,
                  "%s %s warm: no cached prompt tokens %r" % (model, c["name"], r.usage))
        cl.close()
    # a fresh stack, everything at once: the image cases beside two text requests
    with Stack(mkmodel_args=args, serve_args=["--allowed-local-media-path",
                                              os.path.join(VDIR, "images")]) as s:
        cl = OpenAI(base_url=s.url + "/v1", api_key="unused", max_retries=0)
        texts = [[{"role": "user", "content": t}] for t in ("Count to ten.", "Name a colour.")]

        def text(m):
            return cl.chat.completions.create(model="model", messages=m, temperature=0,
                                              max_completion_tokens=16,
                                              extra_body={"ignore_eos": True})
        with ThreadPoolExecutor(len(cases) + 2) as ex:
            img = [ex.submit(ask, cl, c, "file") for c in cases]
            txt = [ex.submit(text, m) for m in texts]
            img = [f.result() for f in img]
            txt = [f.result() for f in txt]
        for r, c in zip(img, cases):
            same_as_transformers(r, c, "%s %s batched" % (model, c["name"]))
        for r, m in zip(txt, texts):
            alone = text(m)
            check(r.choices[0].message.content == alone.choices[0].message.content and
                  r.usage.completion_tokens == 16,
                  "%s: a text request beside the images differs from alone" % model)
        cl.close()
    print("     (%s: %d image cases = transformers cold, warm, batched)" % (model, len(cases)))


def test_qwen2_vl():
    one_model("qwen2-vl")


def test_qwen2_5_vl():
    one_model("qwen2.5-vl")


if __name__ == "__main__":
    run([test_qwen2_vl, test_qwen2_5_vl])
