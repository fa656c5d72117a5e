"""vlm-generate end to end against a real vlmd serving a tiny checkpoint (vlm-mkmodel, the
arguments of tests/model/reference/manifest.json): the greedy tokens Hugging Face produced
(committed in the reference fixture) come back for prompts with images whose embeddings are read
from a .npy file, from a .safetensors file (the fixture itself, TENSOR named) and given as
float64 (converted); --json output; text in and out with the committed test tokenizer (--prompt,
--template, --chat with an image, on a tiny model whose vocabulary and vision ids match that
tokenizer); and the error exits: no daemon, bad embedding file, count mismatch, bad flags,
missing tokenizer, a request vlmd refuses. Does not need NumPy.
"""

import json
import os
import struct
import subprocess
import tempfile
import unittest

import harness

GEN = harness.env("VLM_GENERATE")
TOK = os.path.join(harness.TOK_DIR, "tokenizer.json")
FIXTURE = os.path.join(harness.REF_DIR, harness.checkpoint("vl-f32")["fixture"])
N = 12  # greedy tokens compared (of the fixture's 32)


def run(*args, timeout=60, env=None):
    e = harness.child_env()
    e.pop("VLM_TOKENIZER", None)
    e.pop("VLM_SOCKET", None)
    if env:
        e.update(env)
    return subprocess.run([GEN, *args], capture_output=True, text=True, timeout=timeout, env=e)


def ids_of(stdout):
    return [int(x) for x in stdout.split()]


class GenerateTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = harness.Daemon("vl-f32")
        cls.tmp = tempfile.mkdtemp(prefix="vlm-gen-")
        cls.p = harness.prompts("vl-f32")

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()
        import shutil
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def gen(self, *args, **kw):
        return run("--socket", self.d.sock, *args, **kw)

    def greedy_args(self, n=N):
        return ["--max-tokens", str(n), "--ignore-eos"]

    def tokens_arg(self, p):
        return ["--tokens", ",".join(map(str, p.tokens))]

    def embed_args(self, p, files):
        out = []
        for (ph, rows, t, h, w), f in zip(p.items, files):
            out += ["--embed", f, "--placeholder", str(ph), "--grid",
                    "%d,%d,%d" % (t, h // 2, w // 2)]
        return out

    def npy_files(self, p, descr="<f4"):
        files = []
        for j, (dt, shape, raw) in enumerate(p.embs):
            f = os.path.join(self.tmp, "%s-%d-%s.npy" % (p.name, j, descr[1:]))
            if descr == "<f8":
                vals = struct.unpack("<%df" % (len(raw) // 4), raw)
                raw = struct.pack("<%dd" % len(vals), *vals)
            harness.write_npy(f, descr, (1,) + shape, raw)   # [1, rows, hidden]: squeezed
            files.append(f)
        return files

    def check_greedy(self, r, p, n=N):
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(ids_of(r.stdout), p.greedy[:n], p.name)
        self.assertRegex(r.stderr, r"finish: length, prompt %d tokens .*completion %d tokens, "
                         r"ttft [0-9.]+ ms" % (len(p.tokens), n))

    def test_tokens_only(self):
        p = self.p["text"]
        self.check_greedy(self.gen(*self.tokens_arg(p), *self.greedy_args()), p)

    def test_npy_embeddings(self):
        for name in ("img_middle", "three_images", "video"):
            p = self.p[name]
            r = self.gen(*self.tokens_arg(p), *self.embed_args(p, self.npy_files(p)),
                         *self.greedy_args())
            self.check_greedy(r, p)

    def test_f64_npy_converted(self):
        p = self.p["img_end"]
        r = self.gen(*self.tokens_arg(p), *self.embed_args(p, self.npy_files(p, "<f8")),
                     *self.greedy_args())
        self.check_greedy(r, p)

    def test_safetensors_embeddings_and_tokens_file(self):
        p = self.p["three_images"]
        files = ["%s:%s.emb%d" % (FIXTURE, p.name, j) for j in range(len(p.items))]
        tf = os.path.join(self.tmp, "tokens.json")
        with open(tf, "w") as f:
            json.dump(p.tokens, f)
        args = ["--tokens-file", tf, "--embed", files[0], "--placeholder", "250"]
        for (ph, rows, t, h, w), f in zip(p.items[1:], files[1:]):
            args += ["--embed", f]                     # placeholder inherited, no grid
        r = self.gen(*args, *self.greedy_args())
        # without grids an M-RoPE model cannot place the images: vlmd refuses, and says why
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("request failed: vlmd: item 0: no grid t,h,w (M-RoPE model); error -EINVAL",
                      r.stderr)
        # with grids: exactly the reference
        r = self.gen("--tokens-file", tf, *self.embed_args(p, files), *self.greedy_args())
        self.check_greedy(r, p)
        # one safetensors file holding one tensor needs no name
        one = os.path.join(self.tmp, "one.safetensors")
        harness.write_safetensors(one, {"emb": p.embs[0]})
        pi = self.p["img_start"]
        r = self.gen(*self.tokens_arg(pi), *self.embed_args(pi, [one]), *self.greedy_args())
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_json_output_and_logprobs(self):
        p = self.p["img_start"]
        r = self.gen(*self.tokens_arg(p), *self.embed_args(p, self.npy_files(p)),
                     *self.greedy_args(6), "--json", "--logprobs", "3")
        self.assertEqual(r.returncode, 0, r.stderr)
        j = json.loads(r.stdout)
        self.assertEqual(j["tokens"], p.greedy[:6])
        self.assertEqual(j["finish_reason"], "length")
        self.assertEqual(j["usage"]["prompt_tokens"], len(p.tokens))
        self.assertEqual(j["usage"]["completion_tokens"], 6)
        self.assertGreater(j["timing_us"]["ttft"], 0)
        self.assertEqual(len(j["logprobs"]), 6)
        for tok, lp in zip(j["tokens"], j["logprobs"]):
            self.assertEqual(lp["token"], tok)
            self.assertLessEqual(lp["logprob"], 0.0)
            self.assertEqual(len(lp["top"]), 3)
            self.assertEqual(lp["top"][0][0], tok)       # greedy = the most likely token

    def test_fingerprint_reaches_prefix_cache(self):
        p = self.p["three_images"]
        files = ["%s:%s.emb%d" % (FIXTURE, p.name, j) for j in range(len(p.items))]
        args = self.embed_args(p, files)

        def cached(fp):
            a = list(args)
            a[6:6] = ["--fingerprint", fp]        # on the first image
            r = self.gen(*self.tokens_arg(p), *a, *self.greedy_args(4), "--json")
            self.assertEqual(r.returncode, 0, r.stderr)
            j = json.loads(r.stdout)
            self.assertEqual(j["tokens"], p.greedy[:4])
            return j["usage"]["cached_tokens"]

        a, b = "5a" * 16, "a5" * 32
        cached(a)
        self.assertGreater(cached(a), 0)            # same image identity: prefix reused
        self.assertEqual(cached(b), 0)              # another identity: nothing reused
        r = self.gen(*self.tokens_arg(p), *args, "--fingerprint", "xyz")
        self.assertEqual(r.returncode, 2)

    def test_stop_id(self):
        p = self.p["text"]
        stop = p.greedy[3]
        first = p.greedy.index(stop)
        r = self.gen(*self.tokens_arg(p), "--max-tokens", "20", "--stop-id", str(stop))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(ids_of(r.stdout), p.greedy[:first + 1])
        self.assertIn("finish: stop", r.stderr)

    def test_ctrl_c_cancels(self):
        import signal
        p = self.p["text"]
        proc = subprocess.Popen([GEN, "--socket", self.d.sock, *self.tokens_arg(p),
                                 "--max-tokens", "3000", "--ignore-eos"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0,
                                env=harness.child_env())
        first = os.read(proc.stdout.fileno(), 64)  # unbuffered: communicate() reads the rest
        self.assertTrue(first)                     # the first token arrived
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        err = err.decode()
        self.assertEqual(proc.returncode, 130, err)
        self.assertIn("finish: cancelled", err)
        got = ids_of((first + out).decode())
        self.assertTrue(0 < len(got) < 3000)
        self.assertEqual(got[:3], p.greedy[:len(got[:3])])   # as many as came before the stop

    # ---- errors ----

    def test_no_daemon(self):
        p = self.p["text"]
        sock = os.path.join(self.tmp, "nobody.sock")
        r = run("--socket", sock, *self.tokens_arg(p))
        self.assertEqual(r.returncode, 1)
        self.assertIn("cannot connect to vlmd at " + sock, r.stderr)
        r = run(*self.tokens_arg(p), env={"VLM_SOCKET": sock})
        self.assertEqual(r.returncode, 1)
        self.assertIn(sock, r.stderr)

    def test_bad_files(self):
        p = self.p["img_start"]
        bad = os.path.join(self.tmp, "bad.npy")
        with open(bad, "wb") as f:
            f.write(b"\x93NUMPY\x01\x00\x10\x00{'descr': '<i4'")
        for spec, needle in (("/nonexistent/e.npy", "No such file"),
                             (bad, "bad.npy"),
                             (FIXTURE, "holds"),                      # several tensors, no name
                             (FIXTURE + ":nope", "no tensor named 'nope'"),
                             (FIXTURE + ":img_start.tokens", "I32")):
            r = self.gen(*self.tokens_arg(p), "--embed", spec, "--placeholder", "250")
            self.assertEqual(r.returncode, 1, (spec, r.stderr))
            self.assertIn(needle, r.stderr)
            self.assertEqual(r.stdout, "")
        r = self.gen("--tokens-file", "/nonexistent/ids.txt")
        self.assertEqual(r.returncode, 1)
        self.assertIn("/nonexistent/ids.txt", r.stderr)

    def test_refused_by_vlmd(self):
        p = self.p["img_start"]
        # two tensors for one placeholder run: vlmd refuses the request
        f = self.npy_files(p)[0]
        r = self.gen(*self.tokens_arg(p), "--embed", f, "--placeholder", "250", "--embed", f,
                     *self.greedy_args(4))
        self.assertEqual(r.returncode, 1)
        self.assertIn("request failed: vlmd: 1 placeholder run(s) but 2 tensor(s); error -EINVAL",
                      r.stderr)
        # a token id outside the vocabulary
        r = self.gen("--tokens", "1,2,99999", *self.greedy_args(4))
        self.assertEqual(r.returncode, 1)
        self.assertRegex(r.stderr, r"vlm-generate: request failed: vlmd: token 99999 at 2 >= "
                         r"vocab size \d+; error -EINVAL")
        # --json carries it too
        r = self.gen("--tokens", "1,2,99999", "--json", *self.greedy_args(4))
        self.assertEqual(r.returncode, 1)
        self.assertRegex(r.stdout, r'"error": -22, "error_message": "token 99999 at 2 >= vocab '
                         r'size \d+"')

    def test_usage_errors(self):
        for args in (["--tokens", "1,2", "--bogus"],
                     [],
                     ["--tokens", "1", "--prompt", "x"],
                     ["--tokens", "1,x,3"],
                     ["--tokens", "1", "--placeholder", "5"],
                     ["--tokens", "1", "--embed", "e.npy", "--grid", "1,2"],
                     ["--tokens", "1", "--temperature", "warm"],
                     ["--tokens", "1", "--logprobs", "99"],
                     ["--tokens", "1", "stray"]):
            r = self.gen(*args)
            self.assertIn(r.returncode, (1, 2), (args, r.stderr))
            self.assertTrue(r.stderr.startswith("vlm-generate:") or "usage:" in r.stderr,
                            (args, r.stderr))
        self.assertEqual(self.gen("--tokens", "1,2", "--bogus").returncode, 2)
        self.assertEqual(self.gen("--tokens", "1", "--embed", "x.npy").returncode, 1)
        r = run("--prompt", "hello", "--socket", self.d.sock)
        self.assertEqual(r.returncode, 1)
        self.assertIn("needs a tokenizer", r.stderr)
        r = run("--help")
        self.assertEqual(r.returncode, 0)
        self.assertIn("--embed", r.stdout)

    # ---- text: the committed test tokenizer ----

    def test_echo_text(self):
        # vlmd echoes the prompt: the detokenizer streams the text back exactly
        text = "Hello, world! caf\u00e9 \U0001F44D 123"
        r = self.gen("--prompt", text, "--tokenizer", TOK, "--echo")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, text + "\n")
        r = self.gen("--prompt", text, "--echo", "--ids", env={"VLM_TOKENIZER": TOK})
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertGreater(len(ids_of(r.stdout)), 5)


class TextGenerateTest(unittest.TestCase):
    """A tiny model whose vocabulary and vision token ids match the committed tokenizer."""

    @classmethod
    def setUpClass(cls):
        with open(TOK) as f:
            t = json.load(f)
        special = {a["content"]: a["id"] for a in t["added_tokens"]}
        cls.ids = special
        cls.d = harness.Daemon("vl-f32", extra_mkmodel=["--vocab", "1792"], patch_config={
            "image_token_id": special["<|image_pad|>"],
            "video_token_id": special["<|video_pad|>"],
            "vision_start_token_id": special["<|vision_start|>"],
            "vision_end_token_id": special["<|vision_end|>"],
            "eos_token_id": special["<|im_end|>"]})
        # a real checkpoint carries its chat template, which vlm-generate checks (--model-dir)
        import shutil
        shutil.copy(os.path.join(harness.TOK_DIR, "chat_template.json"), cls.d.model)
        cls.tmp = tempfile.mkdtemp(prefix="vlm-gent-")

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()
        import shutil
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def gen(self, *args, **kw):
        return run("--socket", self.d.sock, "--model-dir", self.d.model, *args, **kw)

    def decode(self, ids):
        r = subprocess.run([os.path.join(os.path.dirname(GEN), "vlm-tokenize"), "-t", TOK,
                            "decode", "--skip-special", *map(str, ids)],
                           capture_output=True, text=True, env=harness.child_env())
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout[:-1]

    def test_prompt_text_matches_ids(self):
        import shutil
        shutil.copy(TOK, os.path.join(self.d.model, "tokenizer.json"))
        for extra in ([], ["--template"]):
            r_ids = self.gen("--prompt", "Describe a cat.", *extra, "--ids", "--max-tokens", "10",
                             "--ignore-eos")
            self.assertEqual(r_ids.returncode, 0, r_ids.stderr)
            ids = ids_of(r_ids.stdout)
            self.assertEqual(len(ids), 10)
            r_txt = self.gen("--prompt", "Describe a cat.", *extra, "--max-tokens", "10",
                             "--ignore-eos")
            self.assertEqual(r_txt.returncode, 0, r_txt.stderr)
            self.assertEqual(r_txt.stdout, self.decode(ids) + "\n")

    def test_chat_with_image(self):
        conv = [{"role": "user", "content": [
            {"type": "image", "grid_thw": [1, 4, 6]},
            {"type": "text", "text": "What is in the picture?"}]}]
        cf = os.path.join(self.tmp, "chat.json")
        with open(cf, "w") as f:
            json.dump(conv, f)
        emb = os.path.join(self.tmp, "img.npy")
        rows = 1 * 4 * 6 // 4
        harness.write_npy(emb, "<f4", (rows, 128), struct.pack("<%df" % (rows * 128),
                                                               *[0.01 * (i % 17)
                                                                 for i in range(rows * 128)]))
        r = self.gen("--chat", cf, "--embed", emb, "--tokenizer", TOK, "--json",
                     "--max-tokens", "5", "--ignore-eos")
        self.assertEqual(r.returncode, 0, r.stderr)
        j = json.loads(r.stdout)
        self.assertEqual(len(j["tokens"]), 5)
        self.assertEqual(j["text"], self.decode(j["tokens"]))
        # the prompt is the chat template's: its length is what vlm-tokenize says
        rt = subprocess.run([os.path.join(os.path.dirname(GEN), "vlm-tokenize"), "-t", TOK,
                             "chat", cf], capture_output=True, text=True,
                            env=harness.child_env())
        self.assertEqual(j["usage"]["prompt_tokens"], len(rt.stdout.split()))
        # the image count must match the --embed count
        r = self.gen("--chat", cf, "--tokenizer", TOK)
        self.assertEqual(r.returncode, 1)
        self.assertIn("1 image/video item(s) but 0 --embed", r.stderr)
        r = self.gen("--chat", cf, "--embed", emb, "--placeholder", "7", "--tokenizer", TOK)
        self.assertEqual(r.returncode, 1)
        self.assertIn("--placeholder 7", r.stderr)

    def test_chat_huge_grid(self):
        # issue 15: a grid of 1 x 65536 x 65536 (2^30 placeholders) is refused before anything
        # is allocated for it (it used to take 17 s and 4.2 GB before failing)
        conv = [{"role": "user", "content": [{"type": "image", "grid_thw": [1, 65536, 65536]},
                                             {"type": "text", "text": "What?"}]}]
        cf = os.path.join(self.tmp, "huge.json")
        with open(cf, "w") as f:
            json.dump(conv, f)
        r = self.gen("--chat", cf, "--tokenizer", TOK, timeout=60)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("longer than vlmd's 1048576 tokens", r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=1)
