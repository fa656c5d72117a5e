"""The official openai Python package against a real vlm-serve + vlmd (tiny checkpoint, real
Qwen2 tokenizer): chat with and without streaming, usage in streams, n, stop strings, seeds,
logprobs, max_completion_tokens, the completions endpoint, 32 concurrent async streams,
greedy text equal to vlm-generate's for the same conversation, with 0, 1 and 3 images as data
URLs and as file:// paths (tests/vision/images), streaming and not, and cached prompt tokens on
the second identical request."""

import asyncio
import json
import os
import subprocess
import tempfile

import openai
from openai import AsyncOpenAI, OpenAI

from harness import Stack, check, child_env, env, run

S = None
C = None
MSGS = [{"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Name three colours of the rainbow."}]
GREEDY = dict(temperature=0)


def chat(**kw):
    args = dict(model=S_MODEL, messages=MSGS, max_completion_tokens=24, **GREEDY)
    args.update(kw)
    return C.chat.completions.create(**args)


def test_models():
    ms = C.models.list()
    ids = [m.id for m in ms.data]
    check(ids == [S_MODEL], "models: %r" % ids)
    check(ms.data[0].owned_by == "vlmd", "owned_by %r" % ms.data[0].owned_by)


def test_chat():
    r = chat()
    check(r.object == "chat.completion" and r.id.startswith("chatcmpl-"), "object/id %r %r" % (r.object, r.id))
    check(len(r.choices) == 1 and r.choices[0].message.role == "assistant", "choices %r" % r.choices)
    check(r.choices[0].finish_reason in ("stop", "length"), "finish %r" % r.choices[0].finish_reason)
    u = r.usage
    check(u.total_tokens == u.prompt_tokens + u.completion_tokens, "usage sums %r" % u)
    check(u.completion_tokens == 24 or r.choices[0].finish_reason == "stop", "max tokens %r" % u)
    check(u.prompt_tokens_details is not None and u.prompt_tokens_details.cached_tokens >= 0,
          "cached_tokens %r" % u)
    # the same request again: greedy, so the same text, and the prompt now comes from the cache
    r2 = chat()
    check(r2.choices[0].message.content == r.choices[0].message.content, "greedy differs")
    check(r2.usage.prompt_tokens_details.cached_tokens > 0, "no cached tokens the second time")


def test_stream():
    full = chat().choices[0].message.content
    chunks = list(chat(stream=True, stream_options={"include_usage": True}))
    check(chunks[0].choices[0].delta.role == "assistant", "first chunk has no role")
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    check(text == full, "stream text %r != %r" % (text, full))
    fins = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    check(len(fins) == 1, "finish reasons %r" % fins)
    last = chunks[-1]
    check(last.choices == [] and last.usage and last.usage.completion_tokens > 0,
          "usage chunk %r" % last)
    check(all(c.usage is None for c in chunks[:-1]), "usage before the last chunk")
    check(len({c.id for c in chunks}) == 1, "ids differ")
    # without include_usage: no usage chunk at all
    chunks = list(chat(stream=True))
    check(all(c.choices for c in chunks) and all(c.usage is None for c in chunks),
          "usage without include_usage")


def test_n():
    r = chat(n=2, temperature=1.0, seed=5)
    check([c.index for c in r.choices] == [0, 1], "indexes %r" % [c.index for c in r.choices])
    chunks = list(chat(n=2, temperature=1.0, seed=5, stream=True,
                       stream_options={"include_usage": True}))
    texts = ["", ""]
    for c in chunks:
        for ch in c.choices:
            texts[ch.index] += ch.delta.content or ""
    check(texts == [c.message.content for c in r.choices], "n=2 stream %r vs %r" %
          (texts, [c.message.content for c in r.choices]))
    check(chunks[-1].usage.completion_tokens == r.usage.completion_tokens, "n=2 usage")


def test_stop():
    full = chat(max_completion_tokens=32).choices[0].message.content
    # a stop string from the middle of the greedy text (likely spanning tokens)
    mid = len(full) // 2
    stop = full[mid:mid + 3]
    check(len(stop) == 3, "greedy text too short: %r" % full)
    want = full[:full.index(stop)]
    r = chat(max_completion_tokens=32, stop=[stop, "never-in-this-text-\u2603"])
    check(r.choices[0].message.content == want, "stop: %r != %r" % (r.choices[0].message.content, want))
    check(r.choices[0].finish_reason == "stop", "stop finish %r" % r.choices[0].finish_reason)
    chunks = list(chat(max_completion_tokens=32, stop=stop, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    check(text == want, "streamed stop: %r != %r" % (text, want))
    # vlm-generate's --stop is the same matcher: the same text
    g = generate(["--max-tokens", "32", "--stop", stop])
    check(g["text"] == want and g["finish_reason"] == "stop" and g["stop_string"] == stop,
          "vlm-generate --stop: %r" % g)


def test_seed():
    a = chat(temperature=1.0, seed=1234, max_completion_tokens=16).choices[0].message.content
    b = chat(temperature=1.0, seed=1234, max_completion_tokens=16).choices[0].message.content
    c = chat(temperature=1.0, seed=4321, max_completion_tokens=16).choices[0].message.content
    check(a == b, "same seed, different text")
    check(a != c, "different seeds, same 16-token text")


def test_logprobs():
    r = chat(logprobs=True, top_logprobs=3, max_completion_tokens=8)
    lp = r.choices[0].logprobs.content
    check(len(lp) == r.usage.completion_tokens, "logprobs %d for %d tokens" % (len(lp), r.usage.completion_tokens))
    for e in lp:
        check(e.logprob <= 0 and len(e.top_logprobs) == 3, "entry %r" % e)
        tops = [t.logprob for t in e.top_logprobs]
        check(tops == sorted(tops, reverse=True), "top not sorted")
        # greedy: the chosen token is the most likely one
        check(abs(e.logprob - tops[0]) < 1e-5, "greedy token is not top-1: %r" % e)
        check(isinstance(e.bytes, list), "bytes %r" % e.bytes)
    try:
        chat(top_logprobs=2)
        raise AssertionError("top_logprobs without logprobs accepted")
    except openai.BadRequestError as ex:
        check("top_logprobs" in str(ex), "message %s" % ex)


def test_max_completion_tokens():
    r = chat(max_completion_tokens=7, extra_body={"ignore_eos": True})
    check(r.usage.completion_tokens == 7 and r.choices[0].finish_reason == "length",
          "usage %r finish %r" % (r.usage, r.choices[0].finish_reason))
    r = C.chat.completions.create(model=S_MODEL, messages=MSGS, max_tokens=5, temperature=0,
                                  extra_body={"ignore_eos": True})
    check(r.usage.completion_tokens == 5, "max_tokens %r" % r.usage)
    # both: max_completion_tokens wins over the deprecated max_tokens
    r = chat(max_tokens=5, max_completion_tokens=3, extra_body={"ignore_eos": True})
    check(r.usage.completion_tokens == 3, "max_completion_tokens over max_tokens %r" % r.usage)


def test_completions():
    r = C.completions.create(model=S_MODEL, prompt="The sky is", max_tokens=6, temperature=0,
                             extra_body={"ignore_eos": True})
    check(r.object == "text_completion" and r.usage.completion_tokens == 6, "completion %r" % r)
    ids = json.loads(subprocess.run([env("VLM_TOKENIZE"), "-t", TOK, "encode", "--json",
                                     "The sky is"], capture_output=True, text=True,
                                    check=True).stdout)
    r2 = C.completions.create(model=S_MODEL, prompt=ids, max_tokens=6, temperature=0,
                              extra_body={"ignore_eos": True})
    check(r2.choices[0].text == r.choices[0].text, "token-id prompt differs from text prompt")
    check(r2.usage.prompt_tokens == len(ids), "prompt tokens %d != %d" % (r2.usage.prompt_tokens, len(ids)))
    r3 = C.completions.create(model=S_MODEL, prompt="The sky is", max_tokens=4, temperature=0,
                              logprobs=2, stream=True)
    text = "".join(c.choices[0].text for c in r3)
    check(r.choices[0].text.startswith(text), "streamed completion %r vs %r" % (text, r.choices[0].text))


def test_async_32():
    async def one(ac, i):
        msgs = [{"role": "user", "content": "Count to %d." % i}]
        s = await ac.chat.completions.create(model=S_MODEL, messages=msgs, temperature=0,
                                             max_completion_tokens=12, stream=True)
        return "".join([c.choices[0].delta.content or "" async for c in s if c.choices])

    async def main():
        ac = AsyncOpenAI(base_url=S.url + "/v1", api_key="unused", max_retries=0)
        texts = await asyncio.gather(*[one(ac, i) for i in range(32)])
        await ac.close()
        return texts

    texts = asyncio.run(main())
    for i in (0, 7, 31):
        r = C.chat.completions.create(model=S_MODEL, temperature=0, max_completion_tokens=12,
                                      messages=[{"role": "user", "content": "Count to %d." % i}])
        check(texts[i] == r.choices[0].message.content, "concurrent stream %d differs" % i)


def generate(args):
    """vlm-generate --json on MSGS (greedy)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(MSGS, f)
    try:
        out = subprocess.run([env("VLM_GENERATE"), "--socket", S.sock, "--model-dir", S.model,
                              "--chat", f.name, "--json"] + args,
                             capture_output=True, text=True, check=True, env=child_env()).stdout
    finally:
        os.unlink(f.name)
    return json.loads(out)


def test_equals_vlm_generate():
    g = generate(["--max-tokens", "24"])
    r = chat()
    check(r.choices[0].message.content == g["text"], "vlm-serve %r != vlm-generate %r" %
          (r.choices[0].message.content, g["text"]))
    check(r.usage.completion_tokens == len(g["tokens"]), "token counts differ")
    check(r.usage.prompt_tokens == g["usage"]["prompt_tokens"], "prompt tokens differ")


def png(w, h):
    import struct
    import zlib
    raw = b"".join(b"\x00" + bytes([(x * 37 + y * 11) % 256 for x in range(w * 3)]) for y in range(h))

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_images():
    """1 and 3 images as data URLs through the openai client are answered (the tiny checkpoint
    has a vision tower), with the prompt the chat template gives for their grids."""
    import base64
    url = "data:image/png;base64," + base64.b64encode(png(56, 84)).decode()
    for n in (1, 3):
        parts = [{"type": "image_url", "image_url": {"url": url}} for _ in range(n)]
        parts.append({"type": "text", "text": "What do you see?"})
        r = C.chat.completions.create(model=S_MODEL, temperature=0, max_completion_tokens=8,
                                      messages=[{"role": "user", "content": parts}])
        # 56 wide, 84 high: grid (1, 6, 4), 6 placeholder tokens each; the prompt as the
        # chat template gives it for those grids (vlm-tokenize chat)
        conv = [{"role": "user", "content": [{"type": "image", "grid_thw": [1, 6, 4]}] * n +
                 [{"type": "text", "text": "What do you see?"}]}]
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(conv, f)
        want = json.loads(subprocess.run([env("VLM_TOKENIZE"), "-t", TOK, "chat", "--json", f.name],
                                         capture_output=True, text=True, check=True).stdout)
        os.unlink(f.name)
        check(r.usage.prompt_tokens == len(want["ids"]),
              "%d images: prompt tokens %d, template says %d" % (n, r.usage.prompt_tokens, len(want["ids"])))
        check(r.usage.completion_tokens > 0 and r.choices[0].finish_reason in ("stop", "length"),
              "%d images: %r" % (n, r.usage))


# ---- images: data URLs and file paths, 0/1/3 images, multi-turn, against vlm-generate ----

IMAGES = os.path.join(env("VLM_SRCDIR"), "tests", "vision", "images")
# small committed images of different kinds and shapes (each a few dozen patches at most)
FILES = ["png_70x70.png", "jpeg_exif2_90x60.jpg", "webp_lossy_160x120.webp"]


def conversation(n, form):
    """A multi-turn conversation with n images (0, 1 or 3), as OpenAI messages (form "data" or
    "file") and as vlm-generate's chat JSON (image parts with a path), the same files."""
    import base64

    def part(f):
        path = os.path.join(IMAGES, f)
        if form == "file":
            url = "file://" + path
        else:
            with open(path, "rb") as fh:
                mime = {"png": "png", "jpg": "jpeg", "webp": "webp"}[f.rsplit(".", 1)[1]]
                url = "data:image/%s;base64,%s" % (mime, base64.b64encode(fh.read()).decode())
        return ({"type": "image_url", "image_url": {"url": url}}, {"type": "image", "path": path})

    imgs = [part(f) for f in FILES[:n]]
    first, later = imgs[:2], imgs[2:]   # 3 images: 2 in the first user turn, 1 in the last
    turns = [("user", first, "What is in these pictures?"),
             ("assistant", [], "Shapes and colours."),
             ("user", later, "And now, in one word?")]
    oai = [{"role": "system", "content": "You are terse."}]
    gen = [{"role": "system", "content": "You are terse."}]
    for role, ims, text in turns:
        if not ims:
            oai.append({"role": role, "content": text})
            gen.append({"role": role, "content": text})
            continue
        oai.append({"role": role, "content": [i[0] for i in ims] + [{"type": "text", "text": text}]})
        gen.append({"role": role, "content": [i[1] for i in ims] + [{"type": "text", "text": text}]})
    return oai, gen


def generate_chat(conv, max_tokens):
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(conv, f)
    try:
        out = subprocess.run([env("VLM_GENERATE"), "--socket", S.sock, "--model-dir", S.model,
                              "--chat", f.name, "--json", "--max-tokens", str(max_tokens)],
                             capture_output=True, text=True, env=child_env())
    finally:
        os.unlink(f.name)
    check(out.returncode == 0, "vlm-generate: %s" % out.stderr)
    return json.loads(out.stdout)


def link_stats():
    """vlm-serve's counters of how images reached vlmd (its /metrics, current connection)."""
    import urllib.request
    with urllib.request.urlopen(S.url + "/metrics", timeout=30) as r:
        text = r.read().decode()
    out = {}
    for k in ("images_preprocessed", "images_reused", "tensors_copied"):
        line = [x for x in text.splitlines() if x.startswith("vlm_serve_link_%s " % k)]
        check(len(line) == 1, "/metrics has no vlm_serve_link_%s line" % k)
        out[k] = int(line[0].split()[1])
    # pixel-dtype auto: bf16 patches for a bfloat16 checkpoint (transformers' cast), else f32
    with open(os.path.join(S.model, "config.json")) as f:
        bf16 = json.load(f).get("torch_dtype") == "bfloat16"
    want = 'vlm_serve_pixel_dtype_info{dtype="%s"} 1' % ("bf16" if bf16 else "f32")
    check(want in text.splitlines(), "/metrics lacks %r" % want)
    return out


def test_image_conversations():
    """0, 1 and 3 images, as data URLs and as file:// paths, streaming and not: the greedy text
    equals vlm-generate --chat's for the same conversation and files, both forms give the same
    text and prompt, the stream the same text as the plain answer, and the second identical
    request reports cached prompt tokens with the same text. Every image goes into vlmd's arena
    without a copy: its grid read from its header, preprocessed there once by the first request
    that carries it, and found there by every later one (/metrics)."""
    seen = {}
    st0 = link_stats()
    sent = 0
    for n in (0, 1, 3):
        for form in ("data", "file"):
            oai, gen = conversation(n, form)
            args = dict(model=S_MODEL, messages=oai, temperature=0, max_completion_tokens=12)
            r = C.chat.completions.create(**args)
            text = r.choices[0].message.content
            what = "%d images as %s" % (n, form)
            g = generate_chat(gen, 12)
            check(text == g["text"], "%s: vlm-serve %r != vlm-generate %r" % (what, text, g["text"]))
            check(r.usage.prompt_tokens == g["usage"]["prompt_tokens"],
                  "%s: prompt tokens %d != vlm-generate's %d" % (what, r.usage.prompt_tokens,
                                                                 g["usage"]["prompt_tokens"]))
            check(r.usage.completion_tokens == len(g["tokens"]), "%s: token counts" % what)
            if n:   # each image adds its placeholder tokens
                check(r.usage.prompt_tokens > seen[0][1] + 4 * n, "%s: prompt %d vs text-only %d" %
                      (what, r.usage.prompt_tokens, seen[0][1]))
            if n in seen:
                check(seen[n] == (text, r.usage.prompt_tokens), "%s differs from the other form: %r vs %r"
                      % (what, (text, r.usage.prompt_tokens), seen[n]))
            seen[n] = (text, r.usage.prompt_tokens)
            # the same request again: the same text, and the prompt comes from the prefix cache
            r2 = C.chat.completions.create(**args)
            check(r2.choices[0].message.content == text, "%s: second answer differs" % what)
            check(r2.usage.prompt_tokens_details.cached_tokens > 0,
                  "%s: no cached tokens the second time: %r" % (what, r2.usage))
            # streaming: the same text, one finish reason, usage last
            chunks = list(C.chat.completions.create(stream=True, stream_options={"include_usage": True},
                                                    **args))
            st = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            check(st == text, "%s streamed: %r != %r" % (what, st, text))
            check(chunks[-1].usage.prompt_tokens == r.usage.prompt_tokens and
                  chunks[-1].usage.prompt_tokens_details.cached_tokens > 0,
                  "%s streamed usage %r" % (what, chunks[-1].usage))
            sent += 3 * n
    st1 = link_stats()
    d = {k: st1[k] - st0[k] for k in st0}
    check(d["tensors_copied"] == 0, "images were copied into the arena: %r" % d)
    # reading a request takes each grid from the image's header; its build preprocesses an image
    # the connection has not seen into the arena, and every later request (the other form of the
    # same bytes, the repeats, the streamed one) finds it there: once per distinct image
    check(d["images_preprocessed"] == len(FILES) and
          d["images_preprocessed"] + d["images_reused"] == sent,
          "%d images sent (%d distinct): %r" % (sent, len(FILES), d))


def test_file_outside_allowed_path():
    """file:// outside --allowed-local-media-path is refused through the openai client too."""
    msgs = [{"role": "user", "content": [{"type": "image_url", "image_url": {
        "url": "file://" + os.path.join(env("VLM_SRCDIR"), "README.md")}}]}]
    try:
        C.chat.completions.create(model=S_MODEL, messages=msgs, max_completion_tokens=4)
        raise AssertionError("a file outside the allowed path was accepted")
    except openai.BadRequestError as ex:
        check("subpath" in str(ex) and ex.body.get("param") == "messages[0].content[0]",
              "message %s" % ex)


def test_errors():
    try:
        C.chat.completions.create(model="no-such-model", messages=MSGS)
        raise AssertionError("unknown model accepted")
    except openai.NotFoundError as ex:
        check("no-such-model" in str(ex), "404 message %s" % ex)
    try:
        chat(temperature=-1)
        raise AssertionError("temperature -1 accepted")
    except openai.BadRequestError as ex:
        check(ex.body.get("param") == "temperature", "param %r" % ex.body)


if __name__ == "__main__":
    TOK = os.path.join(env("VLM_SRCDIR"), "tests", "tokenizer", "data", "tokenizer.json")
    with Stack(serve_args=["--allowed-local-media-path", IMAGES]) as S:
        S_MODEL = "model"
        C = OpenAI(base_url=S.url + "/v1", api_key="unused", max_retries=0)
        run([test_models, test_chat, test_stream, test_n, test_stop, test_seed, test_logprobs,
             test_max_completion_tokens, test_completions, test_async_32, test_equals_vlm_generate,
             test_images, test_image_conversations, test_file_outside_allowed_path, test_errors])
        C.close()
