"""vlmclient end to end against a real vlmd on a tiny checkpoint, with NumPy embeddings (and
PyTorch ones where torch is importable): every reference prompt streams exactly the greedy tokens
Hugging Face produced (tests/model/reference), concurrently and from two threads; float16 and
row-strided / [1, rows, hidden] / read-only arrays are accepted; each tensor's DLPack deleter
runs exactly once on every path (success, refusal before sending, vlmd refusing, cancel, vlmd
killed mid-request) — checked by the array's reference count and the binding's live count;
logprobs, stop ids, seeded sampling, cancel (also from another thread), echo, and reconnecting after vlmd restarts.
"""

import gc
import os
import sys
import threading
import time
import unittest

import harness

harness.need_numpy()
import numpy as np  # noqa: E402

import vlmclient  # noqa: E402
from vlmclient import Client, GenerationConfig, MultiMediaInfo, VlmError  # noqa: E402
from vlmclient import dlpack  # noqa: E402

N = 12
ENOENT, EINVAL, ECONNRESET, ENOTSUP, ETIMEDOUT = 2, 22, 104, 95, 110


def emb_array(entry, dtype=np.float32):
    dt, shape, raw = entry
    return np.frombuffer(raw, dtype="<f4").reshape(shape).astype(dtype)


def mm_for(p, tensors=None, grids=True):
    mm = MultiMediaInfo()
    tensors = tensors if tensors is not None else [emb_array(e) for e in p.embs]
    for (ph, rows, t, h, w), x in zip(p.items, tensors):
        mm.add(ph, x, (t, h // 2, w // 2) if grids else None)
    return mm


def greedy(n=N, **kw):
    return GenerationConfig(max_tokens=n, ignore_eos=True, **kw)


class ClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = harness.Daemon("vl-f32")
        cls.p = harness.prompts("vl-f32")
        cls.c = Client(cls.d.sock, name="test-client")

    @classmethod
    def tearDownClass(cls):
        cls.c.close()
        cls.d.stop()

    def tearDown(self):
        gc.collect()
        self.assertEqual(dlpack.live_count(), 0, "a tensor's deleter did not run")

    def test_reference_prompts_concurrently(self):
        self.assertTrue(self.p, "no reference prompts loaded")
        streams = {name: self.c.generate(p.tokens, mm_for(p), greedy())
                   for name, p in self.p.items()}
        for name, s in streams.items():
            p = self.p[name]
            self.assertEqual(list(s), p.greedy[:N], name)
            self.assertEqual(s.tokens, p.greedy[:N])
            f = s.finish
            self.assertEqual(f.reason, "length")
            self.assertEqual(f.error, 0)
            self.assertEqual(f.prompt_tokens, len(p.tokens))
            self.assertEqual(f.completion_tokens, N)
            self.assertGreater(f.ttft_us, 0)
            self.assertGreaterEqual(f.total_us, f.ttft_us)
            self.assertEqual(list(s), [])       # the end stays the end
            s.close()

    def test_asyncio(self):
        import asyncio

        async def one(name):
            p = self.p[name]
            s = self.c.generate(p.tokens, mm_for(p), greedy())
            out = [t async for t in s]
            s.close()
            return out

        async def main():
            return await asyncio.gather(*(one(n) for n in ("text", "img_start", "video")))

        got = asyncio.run(main())
        self.assertEqual(got, [self.p[n].greedy[:N] for n in ("text", "img_start", "video")])

        # many more streams than a thread pool has threads, on one event loop
        names = list(self.p) * 12

        async def many():
            return await asyncio.gather(*(one(n) for n in names))

        got = asyncio.run(many())
        self.assertEqual(got, [self.p[n].greedy[:N] for n in names])

        # cancel and failure through async iteration
        async def cancel_after_3():
            p = self.p["text"]
            s = self.c.generate(p.tokens, None, greedy(4000))
            out = []
            async for t in s:
                out.append(t)
                if len(out) == 3:
                    s.cancel()
            return s, out

        s, out = asyncio.run(cancel_after_3())
        self.assertEqual(out[:3], self.p["text"].greedy[:3])
        self.assertEqual(s.finish.reason, "cancelled")
        s.close()

        async def refused():
            p = self.p["img_start"]
            s = self.c.generate(p.tokens, mm_for(p, [np.zeros((4, 64), np.float32)]), greedy(2))
            return [t async for t in s]

        with self.assertRaises(VlmError) as cm:
            asyncio.run(refused())
        self.assertEqual(cm.exception.errno, EINVAL)
        # vlmd's reason, not just the errno (the model's hidden size is 128)
        self.assertEqual(cm.exception.vlmd_message, "item 0: 64 columns, model hidden size 128")
        self.assertEqual(str(cm.exception), "[Errno 22] vlmd: item 0: 64 columns, model hidden "
                         "size 128; error -EINVAL")

    def test_two_threads_one_client(self):
        out = {}

        def work(name):
            p = self.p[name]
            for _ in range(3):
                with self.c.generate(p.tokens, mm_for(p), greedy()) as s:
                    out.setdefault(name, []).append(s.wait())

        ts = [threading.Thread(target=work, args=(n,)) for n in ("img_middle", "video")]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        for n in ("img_middle", "video"):
            self.assertEqual(out[n], [self.p[n].greedy[:N]] * 3)

    def test_layouts_and_dtypes(self):
        p = self.p["img_middle"]
        e = emb_array(p.embs[0])
        wide = np.zeros((e.shape[0], e.shape[1] * 2), np.float32)
        wide[:, :e.shape[1]] = e
        strided = wide[:, :e.shape[1]]              # row stride 2 x hidden
        self.assertFalse(strided.flags.c_contiguous)
        ro = e.copy()
        ro.setflags(write=False)                    # NumPy refuses __dlpack__: copied
        for x in (strided, e[None], ro, e.__dlpack__()):
            with self.c.generate(p.tokens, mm_for(p, [x]), greedy()) as s:
                self.assertEqual(s.wait(), p.greedy[:N])
        # DLPack 1.x: a versioned capsule, where the producer has it (NumPy >= 2.1)
        try:
            vcap = e.__dlpack__(max_version=(1, 0))
        except TypeError:
            vcap = None
        if vcap is not None:
            with self.c.generate(p.tokens, mm_for(p, [vcap]), greedy()) as s:
                self.assertEqual(s.wait(), p.greedy[:N])
        # float16 rows: accepted; the tokens may differ from the f32 reference after rounding
        with self.c.generate(p.tokens, mm_for(p, [e.astype(np.float16)]), greedy(4)) as s:
            self.assertEqual(len(s.wait()), 4)
        # DashInfer style: a dict placeholder id -> [tensors], and a string key
        mm = MultiMediaInfo().add_multimedia_content(str(p.items[0][0]), [e], grids=[(1, 2, 3)])
        with self.c.generate(np.array(p.tokens, np.int64), mm, {"max_new_tokens": N,
                                                                  "ignore_eos": True}) as s:
            self.assertEqual(s.wait(), p.greedy[:N])

    def test_deleter_exactly_once(self):
        p = self.p["img_start"]
        e = emb_array(p.embs[0])
        base = sys.getrefcount(e)
        # success
        with self.c.generate(p.tokens, mm_for(p, [e]), greedy(2)) as s:
            s.wait()
        gc.collect()
        self.assertEqual(sys.getrefcount(e), base)
        # refused before anything is sent: int32 rows
        bad = e.astype(np.int32)
        b0 = sys.getrefcount(bad)
        with self.assertRaises(VlmError) as cm:
            self.c.generate(p.tokens, mm_for(p, [bad]), greedy(2))
        self.assertEqual(cm.exception.errno, ENOTSUP)
        self.assertIn("tensor 0", str(cm.exception))
        gc.collect()
        self.assertEqual(sys.getrefcount(bad), b0)
        # refused: a 3-D tensor that is not [1, rows, hidden]
        cube = np.zeros((2, 2, 128), np.float32)
        with self.assertRaises(VlmError):
            self.c.generate(p.tokens, mm_for(p, [cube]), greedy(2))
        # vlmd refuses the request (wrong hidden size): the error comes from the stream
        narrow = np.zeros((4, 64), np.float32)
        n0 = sys.getrefcount(narrow)
        with self.assertRaises(VlmError) as cm:
            with self.c.generate(p.tokens, mm_for(p, [narrow]), greedy(2)) as s:
                s.wait()
        self.assertIsNotNone(s.finish)
        self.assertEqual(s.finish.reason, "error")
        self.assertIn("vlmd: item 0: 64 columns, model hidden size 128", str(cm.exception))
        self.assertEqual(s.finish.message, "item 0: 64 columns, model hidden size 128")
        gc.collect()
        self.assertEqual(sys.getrefcount(narrow), n0)
        # a placeholder run without a tensor
        with self.assertRaises(VlmError) as cm:
            self.c.generate(p.tokens, None, greedy(2)).wait()
        self.assertEqual(cm.exception.vlmd_message, "1 placeholder run(s) but 0 tensor(s)")
        # a type without __dlpack__
        with self.assertRaises(TypeError):
            self.c.generate(p.tokens, MultiMediaInfo().add(250, [[1.0]]), greedy(2))
        gc.collect()
        self.assertEqual(sys.getrefcount(e), base)

    def test_cancel_and_timeout(self):
        p = self.p["img_end"]
        e = emb_array(p.embs[0])
        base = sys.getrefcount(e)
        s = self.c.generate(p.tokens, mm_for(p, [e]), greedy(3000))
        got = []
        for t in s:
            got.append(t)
            if len(got) == 3:
                s.cancel()
        self.assertEqual(got[:3], p.greedy[:3])
        self.assertLess(len(got), 3000)
        self.assertEqual(s.finish.reason, "cancelled")
        s.cancel()                      # after the end: nothing
        s.close()
        gc.collect()
        self.assertEqual(sys.getrefcount(e), base)
        # cancel from another thread while this one blocks in the read
        s = self.c.generate(p.tokens, mm_for(p, [e]), greedy(4000))
        threading.Timer(0.02, s.cancel).start()
        s.wait()
        self.assertEqual(s.finish.reason, "cancelled")
        s.close()

    def test_logprobs_stop_and_params(self):
        p = self.p["text"]
        with self.c.generate(p.tokens, None, greedy(5, logprobs=True, top_logprobs=4)) as s:
            toks = s.wait()
            lps = s.logprobs
        self.assertEqual(toks, p.greedy[:5])
        for t, lp in zip(toks, lps):
            self.assertEqual(lp.token, t)
            self.assertEqual(len(lp.top), 4)
            self.assertEqual(lp.top[0][0], t)
            self.assertAlmostEqual(lp.top[0][1], lp.logprob, places=5)
            self.assertEqual([x[1] for x in lp.top], sorted((x[1] for x in lp.top), reverse=True))
        stop = p.greedy[4]
        with self.c.generate(p.tokens, None, max_tokens=20, stop_token_ids=[stop]) as s:
            toks = s.wait()
        self.assertEqual(toks, p.greedy[:p.greedy.index(stop) + 1])
        self.assertEqual(s.finish.reason, "stop")
        # seeded sampling repeats itself
        cfg = GenerationConfig(max_tokens=8, ignore_eos=True, temperature=1.0, top_k=20,
                               seed=1234)
        a = self.c.generate(p.tokens, None, cfg).wait()
        b = self.c.generate(p.tokens, None, cfg).wait()
        self.assertEqual(a, b)
        with self.assertRaises(VlmError) as cm:
            self.c.generate(p.tokens, None, top_p=1.5)
        self.assertEqual(cm.exception.errno, EINVAL)
        with self.assertRaises(TypeError):
            GenerationConfig.from_dict({"max_tokens": 3, "beam_width": 4})
        self.assertEqual(GenerationConfig.from_dict({"stop_words_ids": [[5], [7]]}).stop_token_ids,
                         (5, 7))
        # out-of-range integers are refused, not wrapped by ctypes
        for bad in ({"max_tokens": -1}, {"top_logprobs": 300}, {"seed": -5}):
            with self.assertRaises(ValueError):
                self.c.generate(p.tokens, None, **bad)

    def test_echo_and_tokenizer_text(self):
        tok = vlmclient.Tokenizer(os.path.join(harness.TOK_DIR, "tokenizer.json"))
        text = "Streaming caf\u00e9 \U0001F44D text"
        ids = tok.encode(text)
        with self.c.generate(ids, None, echo=True) as s:
            self.assertEqual("".join(s.text(tok)), text)
        self.assertEqual(s.tokens, ids)

    def test_unread_streams_do_not_livelock(self):
        # issue 15: 1500 echo requests submitted without reading any stream fill the completion
        # ring; vlmd then stops taking submissions (backpressure) and generate() used to retry
        # EAGAIN forever. Now it routes completions while it waits: all 1500 go through. In a
        # child process, so a livelock shows as a timeout instead of hanging the suite.
        import subprocess
        code = (
            "import sys; sys.path.insert(0, %r)\n"
            "from vlmclient import Client\n"
            "c = Client(%r, name='unread')\n"
            "ss = [c.generate([7 + i %% 50] * 8, None, echo=True) for i in range(1500)]\n"
            "bad = [i for i, s in enumerate(ss) if list(s) != [7 + i %% 50] * 8]\n"
            "print('ok' if not bad else 'bad %%s' %% bad[:5])\n"
            "c.close()\n" % (harness.env("VLM_PYDIR"), self.d.sock))
        try:
            r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                               timeout=90, env=harness.child_env())
        except subprocess.TimeoutExpired:
            self.fail("1500 unread echo requests: generate() did not return within 90 s "
                      "(livelock on a full submission ring)")
        self.assertEqual(r.stdout.strip(), "ok", r.stderr[-2000:])

    def test_token_id_range(self):
        # issue 15: ids that do not fit vlmd's 32-bit (signed) token ids are refused, not wrapped
        for bad in (2 ** 32 + 5, 2 ** 31, -1):
            with self.assertRaises(ValueError) as cm:
                self.c.generate([1, 2, bad], None, echo=True)
            self.assertIn(str(bad), str(cm.exception))
        with self.c.generate([1, 2, 2 ** 31 - 1], None, echo=True) as s:
            self.assertEqual(list(s), [1, 2, 2 ** 31 - 1])

    def test_docs_example_runs(self):
        # docs/PYTHON.md's first example, as written, against this daemon
        import re
        import subprocess
        with open(os.path.join(harness.SRCDIR, "docs", "PYTHON.md")) as f:
            code = re.search(r"```python\n(.*?)```", f.read(), re.S).group(1)
        self.assertIn('Client("/tmp/vlmd.sock")', code)
        code = code.replace("/tmp/vlmd.sock", self.d.sock)
        env = dict(os.environ, PYTHONPATH=harness.env("VLM_PYDIR"))
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           timeout=60, env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        ids, finish = r.stdout.splitlines()
        self.assertEqual(len(ids.split()), 16)
        self.assertTrue(finish.startswith("FinishInfo(reason='length', error=0, prompt_tokens=18"),
                        finish)

    def test_no_daemon(self):
        with self.assertRaises(VlmError) as cm:
            Client("/nonexistent/vlmd.sock")
        self.assertIn(cm.exception.errno, (ENOENT, 111))
        self.assertIn("/nonexistent/vlmd.sock", str(cm.exception))


class RestartTest(unittest.TestCase):
    """vlmd killed mid-request: the stream fails with ECONNRESET, the deleter ran, and a new
    Client works once vlmd is back — without restarting this process."""

    def test_kill_and_reconnect(self):
        p = harness.prompts("vl-f32")["img_middle"]
        d = harness.Daemon("vl-f32")
        try:
            c = Client(d.sock)
            e = emb_array(p.embs[0])
            base = sys.getrefcount(e)
            s = c.generate(p.tokens, mm_for(p, [e]), greedy(3000))
            it = iter(s)
            self.assertEqual(next(it), p.greedy[0])
            d.kill()
            with self.assertRaises(VlmError) as cm:
                for _ in it:
                    pass
            self.assertEqual(cm.exception.errno, ECONNRESET)
            self.assertFalse(c.alive)
            with self.assertRaises(VlmError):
                c.generate(p.tokens, None, greedy(2))
            s.close()
            c.close()
            gc.collect()
            self.assertEqual(sys.getrefcount(e), base)
            self.assertEqual(dlpack.live_count(), 0)

            d2 = harness.Daemon("vl-f32")
            try:
                c2 = Client(d2.sock)
                self.assertEqual(c2.generate(p.tokens, mm_for(p), greedy()).wait(), p.greedy[:N])
                c2.close()
            finally:
                d2.stop()
        finally:
            d.stop()


class TorchTest(unittest.TestCase):
    """The same through PyTorch tensors (CPU; CUDA ones where a GPU is usable)."""

    @classmethod
    def setUpClass(cls):
        try:
            import torch
        except ImportError:
            raise unittest.SkipTest("torch is not importable")
        cls.torch = torch
        cls.d = harness.Daemon("vl-f32")
        cls.p = harness.prompts("vl-f32")
        cls.c = Client(cls.d.sock)

    @classmethod
    def tearDownClass(cls):
        cls.c.close()
        cls.d.stop()

    def test_torch_tensors(self):
        torch = self.torch
        p = self.p["three_images"]
        ts = [torch.from_numpy(emb_array(e).copy()) for e in p.embs]
        self.assertEqual(self.c.generate(p.tokens, mm_for(p, ts), greedy()).wait(), p.greedy[:N])
        bf = [t.to(torch.bfloat16) for t in ts]
        self.assertEqual(len(self.c.generate(p.tokens, mm_for(p, bf), greedy(4)).wait()), 4)
        legacy = [torch.utils.dlpack.to_dlpack(t) for t in ts]       # capsules, DashInfer style
        self.assertEqual(self.c.generate(p.tokens, mm_for(p, legacy), greedy()).wait(),
                         p.greedy[:N])
        if torch.cuda.is_available():
            # zero copy over CUDA IPC; a vlmd on a host backend refuses device tensors
            # (ENOTSUP) — either way the tensors must come back exactly once
            cu = [t.cuda() for t in ts]
            try:
                toks = self.c.generate(p.tokens, mm_for(p, cu), greedy()).wait()
                self.assertEqual(toks, p.greedy[:N])
            except VlmError as ex:
                self.assertEqual(ex.errno, ENOTSUP, str(ex))
        gc.collect()
        self.assertEqual(dlpack.live_count(), 0)


if __name__ == "__main__":
    unittest.main(verbosity=1)
