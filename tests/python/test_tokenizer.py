"""vlmclient.Tokenizer against the committed Hugging Face outputs (tests/tokenizer/data): every
encode case of every tokenizer, decode with and without special tokens, the streaming decoder
(its pieces concatenate to decode()), vocabulary lookups, the chat template of every committed
conversation, and clear errors for a missing or malformed tokenizer.json. No daemon, no NumPy.
"""

import json
import os
import sys
import unicodedata
import unittest

import harness  # noqa: F401  (sets sys.path to python/)

import vlmclient
from vlmclient import Tokenizer, VlmError

DATA = harness.TOK_DIR


class TokenizerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with open(os.path.join(DATA, "cases.json")) as f:
            cls.cases = json.load(f)
        with open(os.path.join(DATA, "chat.json")) as f:
            cls.chat = json.load(f)

    def test_encode_decode_all_cases(self):
        n = 0
        for name, tc in self.cases.items():
            with Tokenizer(os.path.join(DATA, name)) as tok:
                for c in tc["encode"]:
                    text = c["text"]
                    self.assertEqual(tok.encode(text), c["ids"], (name, text))
                    self.assertEqual(tok.encode(text, special_as_text=True),
                                     c["ids_special_as_text"], (name, text))
                    self.assertEqual(tok.decode(c["ids"]), c["decoded"], (name, text))
                    self.assertEqual(tok.decode(c["ids"], skip_special_tokens=True),
                                     c["decoded_skip_special"], (name, text))
                    n += 1
        self.assertGreater(n, 100)

    def test_stream_decoder_matches_decode(self):
        with Tokenizer(os.path.join(DATA, "tokenizer.json")) as tok:
            for c in self.cases["tokenizer.json"]["encode"]:
                d = tok.stream_decoder()
                pieces = [d.feed(i) for i in c["ids"]]
                pieces.append(d.flush())
                self.assertEqual("".join(pieces), c["decoded"], c["text"])
                d.close()
            # a multi-byte character split over byte tokens comes out whole, once
            ids = tok.encode("caf\u00e9 \U0001F44D")
            d = tok.stream_decoder()
            outs = [d.feed(i) for i in ids]
            self.assertTrue(all("\ufffd" not in o for o in outs))
            self.assertEqual("".join(outs) + d.flush(), "caf\u00e9 \U0001F44D")

    def test_vocabulary(self):
        with Tokenizer(os.path.join(DATA, "tokenizer.json")) as tok:
            im_end = tok.token_to_id("<|im_end|>")
            self.assertIsNotNone(im_end)
            self.assertEqual(tok.id_to_token(im_end), "<|im_end|>")
            self.assertTrue(tok.is_special(im_end))
            self.assertFalse(tok.is_special(tok.encode("a")[0]))
            self.assertIsNone(tok.token_to_id("<|no such token|>"))
            self.assertIsNone(tok.id_to_token(10 ** 8))
            self.assertGreater(tok.vocab_size, im_end)

    def test_chat_template(self):
        ms = self.chat["merge_size"]
        with Tokenizer(os.path.join(DATA, "tokenizer.json")) as tok:
            for conv in self.chat["conversations"]:
                p = tok.apply_chat_template(conv["messages"],
                                            add_generation_prompt=conv["add_generation_prompt"],
                                            add_vision_id=conv.get("add_vision_id", False),
                                            merge_size=ms)
                self.assertEqual(p.ids, conv["ids"], conv["messages"])
                # the tokenizer's NFC normalizer is part of the ids
                self.assertEqual(tok.decode(p.ids), unicodedata.normalize("NFC", conv["text"]))
                # items: one per image/video part, in order, pads where they say
                media = [part for m in conv["messages"] if isinstance(m["content"], list)
                         for part in m["content"] if part["type"] in ("image", "video")]
                self.assertEqual(len(p.items), len(media))
                for it, part in zip(p.items, media):
                    self.assertEqual(it.kind, part["type"])
                    self.assertEqual(list(it.grid_thw), part["grid_thw"])
                    t, h, w = part["grid_thw"]
                    self.assertEqual(it.length, t * h * w // (ms * ms))
                    run = p.ids[it.offset:it.offset + it.length]
                    self.assertEqual(run, [it.placeholder_id] * it.length)
                    pad = "<|image_pad|>" if it.kind == "image" else "<|video_pad|>"
                    self.assertEqual(tok.token_to_id(pad), it.placeholder_id)
            # a JSON string works as well as Python objects
            conv = self.chat["conversations"][0]
            self.assertEqual(tok.apply_chat_template(json.dumps(conv["messages"])).ids, conv["ids"])

    def test_errors(self):
        with self.assertRaises(VlmError) as cm:
            Tokenizer("/nonexistent/tokenizer.json")
        self.assertEqual(cm.exception.errno, 2)
        self.assertIn("/nonexistent/tokenizer.json", str(cm.exception))
        with self.assertRaises(VlmError) as cm:
            Tokenizer(json_text='{"model": {"type": "BPE", "vocab": ')
        self.assertEqual(cm.exception.errno, 74)  # EBADMSG
        with Tokenizer(os.path.join(DATA, "tokenizer.json")) as tok:
            with self.assertRaises(VlmError):
                tok.apply_chat_template('[{"role": "user", "content": 5}]')
            with self.assertRaises(VlmError):   # grid not divisible by merge_size**2
                tok.apply_chat_template([{"role": "user", "content": [
                    {"type": "image", "grid_thw": [1, 3, 3]}]}])
        tok = Tokenizer(os.path.join(DATA, "tokenizer.json"))
        tok.close()
        with self.assertRaises(ValueError):
            tok.encode("x")

    def test_version(self):
        self.assertRegex(vlmclient.library_version(), r"^\d+\.\d+\.\d+$")
        self.assertTrue(vlmclient.library_path())


if __name__ == "__main__":
    unittest.main(verbosity=1)
    sys.exit(0)
