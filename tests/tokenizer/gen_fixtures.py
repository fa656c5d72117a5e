#!/usr/bin/env python3
"""Generates the committed tokenizer fixtures of suite 'tokenizer' (run by hand, never in CI).

Needs Hugging Face `tokenizers`, `transformers` and `jinja2` (no torch):
    python3 -m venv /work/venv-tok && /work/venv-tok/bin/pip install tokenizers transformers jinja2
    /work/venv-tok/bin/python tests/tokenizer/gen_fixtures.py

Writes into tests/tokenizer/data/:
  tokenizer.json        byte-level BPE trained here with Qwen2's pre-tokenizer (Split regex +
                        ByteLevel(use_regex=false)), NFC normalizer and Qwen2-VL's special tokens
                        appended after the learned vocabulary (as in the real file).
  tokenizer-flags.json  the same model plus added tokens exercising lstrip/rstrip/single_word/
                        normalized/non-special, and merges in the legacy "a b" string form.
  tokenizer-gpt2.json   the same model with GPT-2's pre-tokenizer (ByteLevel use_regex, prefix
                        space) and no normalizer.
  cases.json            for each tokenizer: every test text with the ids HF produced with and
                        without special-token parsing, the decoded strings (with and without
                        skip_special_tokens), and random id sequences with their lossy decodes.
  chat.json             conversations with image/video grids and the ids transformers'
                        apply_chat_template (real Qwen2-VL chat template) + Qwen2VLProcessor-style
                        pad expansion produce.
The expected outputs all come from Hugging Face code, never from vlmd.
"""
import json
import os
import random
import sys

from corpus_data import (AR, CODE, DE, EL, EMOJI, EN, ES, FR, HE, HI, JA, KO, NUM, RU, TH, WS, ZH,
                         QWEN2_PATTERN, QWEN2VL_CHAT_TEMPLATE, QWEN2VL_SPECIALS)
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers
from tokenizers import pre_tokenizers, processors, trainers

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data")

# ---------------------------------------------------------------------------------------------
# Training corpus: several scripts, emoji, code, numbers, whitespace runs.

# A deterministic pseudo-random mix so the merges see many contexts.
def training_corpus():
    rng = random.Random(1234)
    base = [EN, FR, DE, ES, RU, EL, AR, HE, HI, TH, ZH, JA, KO, EMOJI, CODE, NUM, WS]
    out = []
    for _ in range(60):
        out.extend(base)
    words = " ".join(base).split()
    for _ in range(4000):
        n = rng.randint(3, 25)
        line = " ".join(rng.choice(words) for _ in range(n))
        out.append(line + rng.choice(["", ".", "\n", "!\n\n", " ", "  "]))
    for _ in range(500):
        out.append(str(rng.randint(0, 10**9)) + rng.choice([" ", ", ", ".", "\n"]) +
                   str(rng.random()))
    return out

# ---------------------------------------------------------------------------------------------
# Test corpus: hand-written edge cases plus random mixtures.

def test_texts():
    t = [
        "", " ", "  ", "   ", "\t", "\n", "\n\n", "\n\n\n\n", "\r\n", "\r\n\r\n", " \n ", "\n \n",
        "   \n\n   ", "a", "A", "hello", "Hello world", " hello", "hello ", "  hello  world  ",
        "It's", "it's", "IT'S", "don't", "DON'T", "we're", "they've", "I'm", "you'll", "he'd",
        "'s", "'S", "x's'", "''s", "rock'n'roll", "o'clock", "l'été",
        "1", "12", "123", "1234", "12345", "123456", "1234567890", "3.14159", "-0.5e-10",
        "1,234,567", "v1.2.3", "２０２４年", "٣٤٥", "¹²³", "Ⅻ", "1st 2nd 3rd 4th",
        "你好", "你好，世界！", "日本語のテキスト", "한국어", "中文English混合123",
        "e\u0301", "cafe\u0301", "Cafe\u0301 au lait", "A\u030a", "\u1100\u1161\u11a8",
        "o\u0308\u0304", "\u0958", "\u212b", "\u2126", "n\u0303o", "e\u0301\u0301",
        "👨‍👩‍👧‍👦", "👍🏽", "🏳️‍🌈", "🇯🇵🇫🇷", "❤️", "a👍b", " 🤖 ", "👩🏾‍💻 coding",
        "\u200b", "a\u200bb", "\u200d", "\ufeffBOM", "\u00a0", "a\u00a0b", "\u3000", "x\u3000y",
        "\u2028", "\u2029", "\u0085", "a\u0085b", "\x00", "a\x00b", "\x7f", "\x1b[0m",
        "\ufffd", "\U0010ffff", "\ue000", "\U0001f600\U0001f600\U0001f600",
        "ſ", "'ſ", "K", "ǅ", "ﬁ", "İstanbul", "ß", "ΣΑΣ",
        "<|endoftext|>", "<|im_start|>user\nhi<|im_end|>", "a<|im_end|>b",
        "<|im_start|><|im_end|>", "<|vision_start|><|image_pad|><|image_pad|><|vision_end|>",
        "text <|endoftext|> text", "<|im_start", "|im_end|>", "<|im_start|", "<<|im_end|>>",
        "<|IM_END|>", "< |im_end|>", " <|im_end|> ", "\n<|im_end|>\n",
        "<|video_pad|>" * 5, "x<|box_start|>(1,2),(3,4)<|box_end|>y",
        "!!!", "...", "?!?", "—", "–-", "«quoted»", "“smart quotes”", "(parens) [brackets] {braces}",
        "a\tb", "\t\tindented", "    four spaces", "tab\t", "trailing   ", "line1\nline2\nline3",
        "para\n\n\npara", "crlf\r\nline", "mixed \r\n\t \n end", "  \n", "\n  ", " \t\n\r ",
        "x" * 300, "ab" * 200, " " * 100, "\n" * 50, "😀" * 30, "中" * 100,
        "http://example.com/path?q=1&r=2#frag", "user@example.com", "C:\\Windows\\System32",
        "#include <stdio.h>", "x->y", "a::b", "i++", "a != b && c <= d", "`code`", "$HOME",
        EN, FR, DE, ES, RU, EL, AR, HE, HI, TH, ZH, JA, KO, EMOJI, CODE, NUM, WS,
    ]
    rng = random.Random(99)
    frags = [EN, FR, DE, ES, RU, EL, AR, HE, HI, TH, ZH, JA, KO, EMOJI, CODE, NUM, WS]
    specials = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|image_pad|>"]
    extra = [" ", "  ", "\n", "\n\n", "\t", "123", "'s", "e\u0301", "👍🏽", "\u3000", "\r\n"]
    while len(t) < 420:
        parts = []
        for _ in range(rng.randint(1, 6)):
            r = rng.random()
            if r < 0.55:
                f = rng.choice(frags)
                a = rng.randint(0, len(f))
                b = min(len(f), a + rng.randint(0, 80))
                parts.append(f[a:b])
            elif r < 0.8:
                parts.append(rng.choice(extra))
            elif r < 0.9:
                parts.append(rng.choice(specials))
            else:
                parts.append(str(rng.randint(0, 10**rng.randint(1, 12))))
        t.append("".join(parts))
    return t


def build_tokenizer(corpus):
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=3000, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=[])
    tok.train_from_iterator(corpus, trainer=trainer)
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in QWEN2VL_SPECIALS])
    return tok


def add_flag_tokens(tok):
    tok.add_tokens([
        AddedToken("<tool_call>", special=False, normalized=False),
        AddedToken("[LSTRIP]", lstrip=True, special=False, normalized=False),
        AddedToken("[RSTRIP]", rstrip=True, special=False, normalized=False),
        AddedToken("[BOTH]", lstrip=True, rstrip=True, special=True, normalized=False),
        AddedToken("word", single_word=True, special=False, normalized=False),
        AddedToken("caf\u00e9", special=False, normalized=True),
        AddedToken("Ω", special=False, normalized=True),
        AddedToken("<|im_end|>x", special=False, normalized=False),
    ])
    tok.add_special_tokens([AddedToken("<sp lit>", special=True, normalized=False,
                                       single_word=True)])


def flag_texts():
    return [
        "<tool_call>", "a<tool_call>b", "x  [LSTRIP]y", "x[LSTRIP]  y", "x  [RSTRIP]  y",
        "[RSTRIP]\n\nz", "a \t [BOTH] \n b", "[BOTH][BOTH]", "  [LSTRIP][RSTRIP]  ",
        "word", "a word here", "words", "swordfish", "word_", "_word", "word.", "(word)",
        "wordword", "日word", "word日", "é word", "cafe\u0301", "café", "un cafe\u0301 noir",
        "CAFÉ", "\u2126", "Ω", "ohm \u2126!", "<|im_end|>x", "<|im_end|>y", "<|im_end|>xx",
        "<sp lit>", "a <sp lit> b", "a<sp lit>b", "<|im_start|>[BOTH]<|im_end|>",
        "  [LSTRIP]  [LSTRIP]  ", "[RSTRIP]   [LSTRIP]", "x\u3000[LSTRIP]", "[RSTRIP]\u00a0y",
    ]


def enc_case(tok, text):
    tok.encode_special_tokens = False
    ids = tok.encode(text).ids
    tok.encode_special_tokens = True
    ids_ns = tok.encode(text).ids
    tok.encode_special_tokens = False
    return {
        "text": text,
        "ids": ids,
        "ids_special_as_text": ids_ns,
        "decoded": tok.decode(ids, skip_special_tokens=False),
        "decoded_skip_special": tok.decode(ids, skip_special_tokens=True),
    }


def decode_cases(tok, rng, n):
    size = tok.get_vocab_size(with_added_tokens=True)
    out = []
    for _ in range(n):
        ids = [rng.randrange(size) for _ in range(rng.randint(0, 12))]
        out.append({"ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False),
                    "decoded_skip_special": tok.decode(ids, skip_special_tokens=True)})
    return out


def legacy_merges(path):
    """Rewrites merges from the [a, b] pair form into the legacy "a b" string form."""
    with open(path, encoding="utf-8") as f:
        j = json.load(f)
    j["model"]["merges"] = [" ".join(m) if isinstance(m, list) else m for m in j["model"]["merges"]]
    with open(path, "w", encoding="utf-8") as f:
        json.dump(j, f, ensure_ascii=False, indent=1)


# ---------------------------------------------------------------------------------------------
# Conversations, checked against transformers' apply_chat_template.

def conversations():
    img = lambda t, h, w: {"type": "image", "image": "file:///x.png", "grid_thw": [t, h, w]}
    vid = lambda t, h, w: {"type": "video", "video": "file:///x.mp4", "grid_thw": [t, h, w]}
    txt = lambda s: {"type": "text", "text": s}
    return [
        {"messages": [{"role": "user", "content": "Hello!"}], "add_generation_prompt": True},
        {"messages": [{"role": "user", "content": "Hello!"}], "add_generation_prompt": False},
        {"messages": [{"role": "system", "content": "You are terse."},
                      {"role": "user", "content": "What's 2+2?"},
                      {"role": "assistant", "content": "4"},
                      {"role": "user", "content": "And 3+3?"}], "add_generation_prompt": True},
        {"messages": [{"role": "user", "content": [img(1, 4, 6), txt("Describe this image.")]}],
         "add_generation_prompt": True},
        {"messages": [{"role": "user", "content": [txt("Compare "), img(1, 2, 2), txt(" and "),
                                                   img(1, 8, 4), txt(" please.")]},
                      {"role": "assistant", "content": [txt("The first is smaller.")]},
                      {"role": "user", "content": [img(1, 14, 10), txt("这张图呢？")]}],
         "add_generation_prompt": True},
        {"messages": [{"role": "system", "content": [txt("Vision system prompt.")]},
                      {"role": "user", "content": [vid(4, 6, 8), txt("What happens in the video?")]}],
         "add_generation_prompt": True},
        {"messages": [{"role": "user", "content": [img(1, 2, 4), vid(2, 4, 4), img(1, 6, 6)]}],
         "add_generation_prompt": True, "add_vision_id": True},
        {"messages": [{"role": "user", "content": "  spaces\n\nand newlines\t"},
                      {"role": "assistant", "content": "Sure 👍🏽 cafe\u0301"},
                      {"role": "user", "content": "<|im_end|> inside"}], "add_generation_prompt": True},
        {"messages": [{"role": "user", "content": ""}], "add_generation_prompt": True},
        {"messages": [{"role": "assistant", "content": "I start."},
                      {"role": "user", "content": [img(1, 32, 24)]}], "add_generation_prompt": False},
    ]


def chat_expected(hf, conv, merge_size=2):
    text = hf.apply_chat_template(conv["messages"], tokenize=False,
                                  add_generation_prompt=conv["add_generation_prompt"],
                                  add_vision_id=conv.get("add_vision_id", False))
    # Qwen2VLProcessor expands each pad token to grid.prod() // merge_size**2 copies, in order.
    grids = {"image": [], "video": []}
    for m in conv["messages"]:
        if isinstance(m["content"], list):
            for c in m["content"]:
                if c["type"] in grids:
                    grids[c["type"]].append(c["grid_thw"])
    for kind, pad in (("image", "<|image_pad|>"), ("video", "<|video_pad|>")):
        out, pos = [], 0
        for g in grids[kind]:
            i = text.index(pad, pos)
            n = g[0] * g[1] * g[2] // (merge_size * merge_size)
            out.append(text[pos:i] + "<|placeholder|>" * n)
            pos = i + len(pad)
        out.append(text[pos:])
        text = "".join(out).replace("<|placeholder|>", pad)
    return text, hf(text, add_special_tokens=True)["input_ids"]


def main():
    os.makedirs(DATA, exist_ok=True)
    tok = build_tokenizer(training_corpus())
    main_path = os.path.join(DATA, "tokenizer.json")
    tok.save(main_path, pretty=True)

    flag_tok = Tokenizer.from_file(main_path)
    add_flag_tokens(flag_tok)
    flags_path = os.path.join(DATA, "tokenizer-flags.json")
    flag_tok.save(flags_path, pretty=True)
    legacy_merges(flags_path)
    flag_tok = Tokenizer.from_file(flags_path)

    # GPT-2-style configuration of the same model: ByteLevel with its own regex and a prefix
    # space, no normalizer; exercises the other pre-tokenizer paths.
    gpt2 = json.load(open(main_path, encoding="utf-8"))
    gpt2["normalizer"] = None
    gpt2["pre_tokenizer"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                             "use_regex": True}
    gpt2_path = os.path.join(DATA, "tokenizer-gpt2.json")
    with open(gpt2_path, "w", encoding="utf-8") as f:
        json.dump(gpt2, f, ensure_ascii=False)
    gpt2_tok = Tokenizer.from_file(gpt2_path)

    rng = random.Random(7)
    texts = test_texts()
    cases = {
        "tokenizer.json": {
            "encode": [enc_case(tok, t) for t in texts],
            "decode": decode_cases(tok, rng, 150),
        },
        "tokenizer-flags.json": {
            "encode": [enc_case(flag_tok, t) for t in flag_texts() + texts[:120]],
            "decode": decode_cases(flag_tok, rng, 50),
        },
        "tokenizer-gpt2.json": {
            "encode": [enc_case(gpt2_tok, t) for t in texts[:200]],
            "decode": decode_cases(gpt2_tok, rng, 20),
        },
    }
    with open(os.path.join(DATA, "cases.json"), "w", encoding="utf-8") as f:
        json.dump(cases, f, ensure_ascii=False, indent=0)

    from transformers import PreTrainedTokenizerFast
    hf = PreTrainedTokenizerFast(tokenizer_file=main_path, chat_template=QWEN2VL_CHAT_TEMPLATE)
    chats = []
    for conv in conversations():
        text, ids = chat_expected(hf, conv)
        chats.append(dict(conv, text=text, ids=ids))
    with open(os.path.join(DATA, "chat.json"), "w", encoding="utf-8") as f:
        json.dump({"merge_size": 2, "conversations": chats}, f, ensure_ascii=False, indent=0)
    print("wrote", len(cases["tokenizer.json"]["encode"]), "+",
          len(cases["tokenizer-flags.json"]["encode"]), "encode cases,", len(chats), "chats",
          file=sys.stderr)


if __name__ == "__main__":
    main()
