"""vlmclient image preprocessing against transformers' fixtures (tests/vision/fixtures.json, made
by tests/vision/gen_pixels.py): vlmclient.preprocess_image on file paths, bytes and NumPy RGB
arrays (the bytes PIL handed the processor) gives the SHA-256 of transformers' float32
pixel_values and its grid for every committed case; PIL images too (every case; PIL is a test
dependency); a video from frames matches Qwen2VLVideoProcessor, also with frame
sampling from the video's rate (tests/vision/video.json: indices, pixels, second_per_grid_ts);
bfloat16 images
are the float32 values rounded to nearest even; errors carry the C library's errno and reason;
MultiMediaInfo.add_image / from_chat put a pixel item into a request sent to a real vlmd.
"""

import errno
import hashlib
import json
import os
import unittest

import harness

harness.need_numpy()
import numpy as np  # noqa: E402

import vlmclient  # noqa: E402
from vlmclient import Client, Image, MultiMediaInfo, VlmError, preprocess_image  # noqa: E402

VDIR = os.path.join(harness.SRCDIR, "tests", "vision")
with open(os.path.join(VDIR, "fixtures.json")) as _f:
    FX = json.load(_f)


def img_path(name):
    return os.path.join(VDIR, "images", name)


def sha(a):
    return hashlib.sha256(np.ascontiguousarray(a, dtype="<f4").tobytes()).hexdigest()


def case(name, mn=0, mx=0):
    for c in FX["images"]:
        if c["image"] == name and c.get("min_pixels", 0) == mn and c.get("max_pixels", 0) == mx:
            return c
    raise KeyError(name)


def lim(c):
    return (c.get("min_pixels") or None, c.get("max_pixels") or None)


class TestPixels(unittest.TestCase):
    def test_files_match_transformers(self):
        self.assertGreaterEqual(len(FX["images"]), 30)
        for c in FX["images"]:
            with self.subTest(image=c["image"], limits=lim(c)):
                pv, grid = preprocess_image(img_path(c["image"]), *lim(c))
                self.assertEqual(pv.dtype, np.float32)
                self.assertEqual(pv.shape, (c["rows"], c["cols"]))
                self.assertEqual(list(grid), c["grid"])
                self.assertEqual(sha(pv), c["sha256"])

    def test_bytes_and_arrays(self):
        c = case("png_rgba_120x90.png")
        with open(img_path(c["image"]), "rb") as f:
            data = f.read()
        for src in (data, bytearray(data), memoryview(data)):
            pv, grid = preprocess_image(src)
            self.assertEqual((sha(pv), list(grid)), (c["sha256"], c["grid"]))
        # a pathlib path (os.PathLike), and the bytes of a JPEG with EXIF rotation and a WebP
        import pathlib
        pv, grid = preprocess_image(pathlib.Path(img_path(c["image"])))
        self.assertEqual((sha(pv), list(grid)), (c["sha256"], c["grid"]))
        for name in ("jpeg_exif6_90x60.jpg", "webp_lossy_160x120.webp"):
            with open(img_path(name), "rb") as f:
                pv, grid = preprocess_image(f.read())
            self.assertEqual((sha(pv), list(grid)), (case(name)["sha256"], case(name)["grid"]))
        rgb = np.fromfile(os.path.join(VDIR, "arrays", "png_rgba_120x90.png.rgb"),
                          dtype=np.uint8).reshape(90, 120, 3)
        pv, grid = preprocess_image(rgb)
        self.assertEqual((sha(pv), list(grid)), (c["sha256"], c["grid"]))
        # a row-strided view (a crop of a wider array) is made contiguous
        wide = np.zeros((90, 130, 3), np.uint8)
        wide[:, :120] = rgb
        pv, _ = preprocess_image(wide[:, :120])
        self.assertEqual(sha(pv), c["sha256"])
        # small committed arrays compare value by value
        c = case("png_1x1.png")
        ref = np.fromfile(os.path.join(VDIR, c["array"]), dtype="<f4").reshape(c["rows"], -1)
        pv, _ = preprocess_image(img_path("png_1x1.png"))
        np.testing.assert_array_equal(pv, ref)

    def test_pil(self):
        """A PIL image (opened and EXIF-transposed as gen_pixels.py handed it to the processor,
        its mode kept: RGB, L, 1, P with and without transparency, LA, RGBA, I (16-bit grey),
        CMYK) gives transformers' pixel values and grid, for every committed case and limit.
        PIL is a test dependency (python3-pil in tools/install-deps.sh): missing, this fails."""
        from PIL import Image as PILImage, ImageOps
        modes = set()
        for c in FX["images"]:
            with self.subTest(image=c["image"], limits=lim(c)):
                im = ImageOps.exif_transpose(PILImage.open(img_path(c["image"])))
                modes.add(im.mode)
                pv, grid = preprocess_image(im, *lim(c))
                self.assertEqual(pv.dtype, np.float32)
                self.assertEqual((sha(pv), list(grid)), (c["sha256"], c["grid"]))
        # the modes the conversion has a branch for were all exercised
        self.assertTrue({"RGB", "RGBA", "LA", "P", "L", "1", "CMYK"} <= modes, modes)

    def test_video(self):
        v = FX["video"]
        frames = np.fromfile(os.path.join(VDIR, "arrays", "video_frames_3x48x64.rgb"),
                             dtype=np.uint8).reshape(3, 48, 64, 3)
        with Image.video(frames, v["min_pixels"], v["max_pixels"]) as img:
            self.assertTrue(img.is_video)
            self.assertEqual(list(img.grid), v["grid"])
            self.assertEqual(img.tokens, v["rows"] // 4)
            self.assertEqual(sha(img.pixel_values()), v["sha256"])

    def test_video_sampling(self):
        """tests/vision/video.json (gen_video.py): transformers' frame indices and sampled rate
        for every sampling case (its errors: VlmError EINVAL), and the sampled clips' pixel
        values, grid and second_per_grid_ts through preprocess_video / Image.video (arrays and
        frame files)."""
        with open(os.path.join(VDIR, "video.json")) as f:
            vx = json.load(f)
        for c in vx["sampling"]:
            kw = {k: c[k] or None for k in ("source_fps", "fps", "num_frames", "min_frames",
                                            "max_frames")}
            if "indices" in c:
                idx, sfps = vlmclient.sample_frames(c["total"], **kw)
                self.assertEqual((idx, sfps), (c["indices"], c["sampled_fps"]), c)
            else:
                with self.assertRaises(VlmError) as cm:
                    vlmclient.sample_frames(c["total"], **kw)
                self.assertEqual(cm.exception.errno, errno.EINVAL, c)
        for c in vx["videos"]:
            clip = np.fromfile(os.path.join(VDIR, c["frames"]), dtype=np.uint8).reshape(
                c["n_frames"], c["height"], c["width"], 3)
            kw = {k: c[k] or None for k in ("source_fps", "fps", "num_frames",
                                            "max_video_tokens")}
            pv, grid, spg = vlmclient.preprocess_video(clip, c["min_pixels"], c["max_pixels"],
                                                       **kw)
            self.assertEqual((sha(pv), list(grid), spg),
                             (c["sha256"], c["grid"], c["second_per_grid"]), c["name"])
        c = vx["files"]
        with Image.video([img_path(f) for f in c["files"]], c["min_pixels"], c["max_pixels"],
                         source_fps=c["source_fps"], num_frames=c["num_frames"]) as v:
            self.assertTrue(v.is_video)
            self.assertEqual((sha(v.pixel_values()), list(v.grid), v.second_per_grid),
                             (c["sha256"], c["grid"], c["second_per_grid"]))
        cfg = vlmclient.VisionConfig(VDIR, video=True)
        self.assertEqual((cfg.min_pixels, cfg.max_pixels),
                         (vx["config"]["min_pixels"], vx["config"]["max_pixels"]))
        with Image("%s" % img_path("png_28x28.png")) as im:
            self.assertEqual(im.second_per_grid, 0.0)
        with self.assertRaises(VlmError) as cm:
            Image.video(clip, fps=2.0)            # fps without the video's own rate
        self.assertIn("source_fps", str(cm.exception))

    def test_bf16_and_config(self):
        cfg = vlmclient.VisionConfig(VDIR)
        self.assertEqual((cfg.min_pixels, cfg.max_pixels, cfg.patch_size), (3136, 12845056, 14))
        with Image(img_path("png_28x28.png"), config=cfg) as f32, \
                Image(img_path("png_28x28.png"), config=cfg, dtype="bfloat16") as b16:
            u = f32.pixel_values().view(np.uint32).astype(np.uint64)
            want = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
            np.testing.assert_array_equal(b16.pixel_values(), want)
            self.assertEqual(f32.tokens, 4)
            self.assertIn("grid=(1, 4, 4)", repr(f32))

    def test_pixel_dtype_of_checkpoint(self):
        # a bfloat16 checkpoint's config gives bf16 patches by default; float32 / float16 / no
        # config.json give float32; an explicit dtype wins; text_config's value first
        import shutil
        import tempfile
        d = tempfile.mkdtemp()
        try:
            shutil.copy(os.path.join(VDIR, "preprocessor_config.json"), d)
            self.assertEqual(vlmclient.pixel_dtype(d), "float32")          # no config.json
            for cfg, want in (({"torch_dtype": "bfloat16"}, "bfloat16"),
                              ({"dtype": "bfloat16"}, "bfloat16"),
                              ({"torch_dtype": "float32"}, "float32"),
                              ({"torch_dtype": "float16"}, "float32"),
                              ({"torch_dtype": "float32",
                                "text_config": {"torch_dtype": "bfloat16"}}, "bfloat16"),
                              ({}, "float32")):
                with open(os.path.join(d, "config.json"), "w") as f:
                    json.dump(cfg, f)
                self.assertEqual(vlmclient.pixel_dtype(d), want, cfg)
                vc = vlmclient.VisionConfig(d)
                self.assertEqual(vc.pixel_dtype, want)
                with Image(img_path("png_28x28.png"), config=vc) as im, \
                        Image(img_path("png_28x28.png"), config=vc, dtype="float32") as f32:
                    self.assertEqual(im.pixel_values().dtype,
                                     np.uint16 if want == "bfloat16" else np.float32)
                    self.assertEqual(f32.pixel_values().dtype, np.float32)
            with open(os.path.join(d, "config.json"), "w") as f:
                f.write("{not json")
            with self.assertRaises(VlmError) as cm:
                vlmclient.pixel_dtype(d)
            self.assertEqual(cm.exception.errno, errno.EBADMSG)
        finally:
            shutil.rmtree(d)

    def test_errors(self):
        for name, code, text in (
                ("bad/image.gif", errno.ENOTSUP, "GIF images are not supported"),
                ("bad/truncated.jpg", errno.EBADMSG, "truncated JPEG"),
                ("bad/bomb_100000x100000.png", errno.E2BIG, "over the limit"),
                ("bad/ratio201_1x201.png", errno.ERANGE,
                 "absolute aspect ratio must be smaller than 200, got 201.0"),
                ("no-such.png", errno.ENOENT, "No such file")):
            with self.subTest(name=name):
                with self.assertRaises(VlmError) as cm:
                    preprocess_image(img_path(name))
                self.assertEqual(cm.exception.errno, code)
                self.assertIn(text, str(cm.exception))
        with self.assertRaises(ValueError):
            preprocess_image(np.zeros((4, 4, 3), np.float32))
        with self.assertRaises(ValueError):
            preprocess_image(np.zeros((4, 4), np.uint8))
        with self.assertRaises(ValueError):
            preprocess_image(img_path("png_28x28.png"), max_pixels=-5)
        with self.assertRaises(VlmError) as cm:
            preprocess_image(img_path("png_28x28.png"), min_pixels=10000, max_pixels=5000)
        self.assertEqual(cm.exception.errno, errno.EINVAL)
        # a video frame whose header claims a bomb's size: refused before decoding, the frame
        # named, wherever it is in the list
        for frames in ([img_path("png_28x28.png"), img_path("bad/bomb_100000x100000.png")],
                       [img_path("bad/bomb_100000x100000.png"), img_path("png_28x28.png")]):
            with self.assertRaises(VlmError) as cm:
                vlmclient.preprocess_video(frames)
            self.assertEqual(cm.exception.errno, errno.E2BIG)
            self.assertIn("bomb_100000x100000.png: PNG image is 100000 x 100000", str(cm.exception))


class TestRequest(unittest.TestCase):
    def test_add_image_reaches_vlmd(self):
        """An image item goes through the binding into a request vlmd receives: the request
        ends with tokens and nothing is left behind; misuse is refused before anything is sent."""
        d = harness.Daemon(model=False)
        try:
            with Client(d.sock) as cl:
                img = Image(img_path("png_28x28.png"))
                mm = MultiMediaInfo().add_image(151655, img)
                mm.add_image(151655, img_path("png_rgba_120x90.png"), max_pixels=3136)
                self.assertEqual(len(mm), 2)
                with self.assertRaises(ValueError):
                    MultiMediaInfo().add_image(151655, img, max_pixels=3136)
                ids = [1, 2] + [151655] * img.tokens + [3] + [151655] * 4 + [4]
                stream = cl.generate(ids, mm, max_tokens=2, echo=True, timeout=10)
                self.assertGreater(len(list(stream)), 0)
                # from_chat with an Image whose grid disagrees with the prompt item
                tok = vlmclient.Tokenizer(os.path.join(harness.TOK_DIR, "tokenizer.json"))
                prompt = tok.apply_chat_template([{"role": "user", "content": [
                    {"type": "image", "grid_thw": [1, 4, 6]}, {"type": "text", "text": "hi"}]}])
                with self.assertRaises(ValueError):
                    MultiMediaInfo.from_chat(prompt, [img])
                prompt = tok.apply_chat_template([{"role": "user", "content": [
                    {"type": "image", "grid_thw": list(img.grid)},
                    {"type": "text", "text": "hi"}]}])
                mm = MultiMediaInfo.from_chat(prompt, [img])
                pid = prompt.items[0].placeholder_id
                self.assertEqual(prompt.ids.count(pid), img.tokens)
                self.assertEqual(mm.items()[0][0], pid)
                img.close()
        finally:
            d.stop()


    def test_arena_video(self):
        """Image.video(frame files or frame arrays, client=cl): the grid from the sampling and
        the first kept frame (vlm_video_probe_*, nothing preprocessed yet), then each request
        preprocesses straight into the connection's arena (vlm_request_add_video_files / _rgb):
        grid, tokens, second_per_grid and pixel values of the buffer path (Image.video without a
        client), no tensor copied, the first request preprocesses and the next finds it
        (images_reused); bad sampling and a missing kept frame fail with the library's
        reason."""
        files = [os.path.join(VDIR, "clips", "walk", "f%02d.png" % i) for i in range(12)]
        kw = dict(source_fps=25.0, num_frames=6)
        d = harness.Daemon(model=False)
        try:
            with Client(d.sock) as cl, Image.video(files, 3136, 12544, **kw) as ref:
                s0 = cl.stats()
                v = Image.video(files, 3136, 12544, client=cl, **kw)
                self.assertTrue(v.bound and v.is_video)
                self.assertEqual((v.grid, v.tokens), (ref.grid, ref.tokens))
                self.assertEqual(v.second_per_grid, ref.second_per_grid)
                self.assertGreater(v.second_per_grid, 0)
                self.assertTrue(np.array_equal(v.pixel_values(), ref.pixel_values()))
                s1 = cl.stats()
                self.assertEqual(s1["images_preprocessed"], s0["images_preprocessed"])
                rng = np.random.default_rng(7)
                arrays = rng.integers(0, 256, (12, 36, 48, 3), dtype=np.uint8)
                with Image.video(arrays, 3136, 12544, **kw) as aref:
                    va = Image.video(arrays, 3136, 12544, client=cl, **kw)
                    self.assertTrue(va.bound and va.is_video)
                    self.assertEqual((va.grid, va.tokens), (aref.grid, aref.tokens))
                    self.assertEqual(va.second_per_grid, aref.second_per_grid)
                    self.assertTrue(np.array_equal(va.pixel_values(), aref.pixel_values()))
                for turn in range(2):
                    for x in (v, va):
                        mm = MultiMediaInfo().add_image(151656, x)
                        st = cl.generate([1] + [151656] * x.tokens + [2], mm, max_tokens=2,
                                         echo=True, timeout=10)
                        self.assertGreater(len(list(st)), 0)
                s2 = cl.stats()
                self.assertEqual(s2["tensors_copied"], s0["tensors_copied"])
                self.assertEqual(s2["images_preprocessed"] - s1["images_preprocessed"], 2)
                self.assertEqual(s2["images_reused"] - s1["images_reused"], 2)
                with self.assertRaises(VlmError) as cm:
                    Image.video(files, 3136, 12544, client=cl, fps=2.0)
                self.assertIn("source_fps", str(cm.exception))
                self.assertEqual(cm.exception.errno, errno.EINVAL)
                gone = files[:3] + [os.path.join(VDIR, "clips", "no-such-frame.png")] + files[4:]
                with self.assertRaises(VlmError) as cm:
                    Image.video(gone, 3136, 12544, client=cl)
                self.assertIn("no-such-frame.png", str(cm.exception))
                self.assertEqual(cm.exception.errno, errno.ENOENT)
                with self.assertRaises(ValueError):
                    Image.video([np.zeros((28, 28, 3), np.uint8), np.zeros((28, 14, 3),
                                                                          np.uint8)], client=cl)
        finally:
            d.stop()

    def test_arena_path(self):
        """client.image(src) (a file, bytes, a NumPy array, a PIL image) reads the grid from the
        header or the array's size (nothing preprocessed yet); the first request that carries it
        preprocesses it straight into the connection's arena: the same grid and pixel values as
        Image(src), no tensor copied (vlm_conn_stats), each later request finds it there
        (images_reused) instead of preprocessing again; an Image without a client is copied
        (the counter sees copies); min/max pixels apply; bad files fail with the library's
        reason (damage after the header: at the request, with the decoder's words) and leave
        the connection usable."""
        d = harness.Daemon(model=False)
        try:
            with Client(d.sock) as cl:
                png = img_path("png_rgba_120x90.png")
                with open(png, "rb") as f:
                    data = f.read()
                ref = Image(png)
                s0 = cl.stats()
                srcs = [png, data, np.frombuffer(b"".join(bytes([(i * 7 + j) % 256 for j in
                                                                 range(3)]) for i in range(40 * 56)),
                                                 dtype=np.uint8).reshape(40, 56, 3)]
                from PIL import Image as PILImage
                srcs.append(PILImage.open(png))    # RGBA: composited on white by the binding
                bound = [cl.image(x) for x in srcs]
                self.assertTrue(all(b.bound for b in bound))
                self.assertEqual(bound[0].grid, ref.grid)
                self.assertEqual(bound[1].grid, ref.grid)
                self.assertEqual(bound[3].grid, ref.grid)
                self.assertEqual(bound[0].tokens, ref.tokens)
                self.assertTrue(np.array_equal(bound[0].pixel_values(), ref.pixel_values()))
                self.assertTrue(np.array_equal(bound[3].pixel_values(), ref.pixel_values()))
                with Image(srcs[2]) as r2:
                    self.assertEqual(bound[2].grid, r2.grid)
                    self.assertTrue(np.array_equal(bound[2].pixel_values(), r2.pixel_values()))
                s1 = cl.stats()
                # only headers and sizes read so far
                self.assertEqual(s1["images_preprocessed"], s0["images_preprocessed"])
                self.assertEqual(s1["images_reused"], s0["images_reused"])
                small = cl.image(png, max_pixels=3136)
                self.assertLess(small.tokens, ref.tokens)
                for turn in range(3):   # a conversation: the same images every turn
                    ids, mm = [1], MultiMediaInfo()
                    for b in bound + [small]:
                        mm.add_image(151655, b)
                        ids += [151655] * b.tokens + [2]
                    st = cl.generate(ids, mm, max_tokens=2, echo=True, timeout=10)
                    self.assertGreater(len(list(st)), 0)
                s2 = cl.stats()
                self.assertEqual(s2["tensors_copied"], s0["tensors_copied"])
                # the first turn preprocesses the file (its bytes are the same image), the array,
                # the PIL image (its RGB array) and the small one; every later add is a memo hit
                self.assertEqual(s2["images_preprocessed"] - s1["images_preprocessed"], 4)
                self.assertEqual(s2["images_reused"] - s1["images_reused"], 1 + 2 * 5)
                # without a client: a buffer of its own, copied into the arena per request
                mm = MultiMediaInfo().add_image(151655, ref)
                st = cl.generate([1] + [151655] * ref.tokens, mm, max_tokens=2, echo=True,
                                 timeout=10)
                self.assertGreater(len(list(st)), 0)
                self.assertEqual(cl.stats()["tensors_copied"], s0["tensors_copied"] + 1)
                with self.assertRaises(VlmError) as cm:
                    cl.image(img_path("bad/image.gif"))
                self.assertIn("GIF images are not supported", str(cm.exception))
                self.assertEqual(cm.exception.errno, errno.ENOTSUP)
                with self.assertRaises(VlmError) as cm:
                    cl.image(img_path("bad/ratio201_1x201.png"))
                self.assertIn("absolute aspect ratio must be smaller than 200", str(cm.exception))
                # a sound header over damaged data: bound, then refused by the request
                cut = cl.image(img_path("bad/truncated.jpg"))
                with self.assertRaises(VlmError) as cm:
                    cl.generate([1] + [151655] * cut.tokens, MultiMediaInfo().add_image(
                        151655, cut), max_tokens=2, echo=True, timeout=10)
                with self.assertRaises(VlmError) as want:
                    preprocess_image(img_path("bad/truncated.jpg"))
                self.assertEqual(cm.exception.errno, errno.EBADMSG)
                self.assertEqual(str(cm.exception).split(": ", 1)[1],
                                 str(want.exception).split(": ", 1)[1])
                self.assertTrue(cl.alive)
                ref.close()
        finally:
            d.stop()


class TestGenerate(unittest.TestCase):
    def run_gen(self, *args):
        import subprocess
        return subprocess.run([harness.env("VLM_GENERATE"), *args], capture_output=True,
                              text=True, timeout=60, env=harness.child_env())

    def test_image_flags(self):
        """vlm-generate --image / chat parts with "path": the images are preprocessed and the
        request reaches vlmd and is answered; bad files and
        bad flag combinations fail on the client side with the library's reason."""
        import tempfile
        tok = os.path.join(harness.TOK_DIR, "tokenizer.json")
        d = harness.Daemon(model=False)
        try:
            r = self.run_gen("--socket", d.sock, "--tokenizer", tok, "--prompt", "Describe.",
                             "--image", img_path("png_28x28.png"), "--image",
                             img_path("webp_lossy_160x120.webp"), "--echo", "--ids",
                             "--max-tokens", "2", "--timeout", "10000")
            self.assertEqual(r.returncode, 0, r.stderr)
            # the arena path: the grids from the headers, each file preprocessed once into the
            # arena by the request (the same file twice: preprocessed, then found), nothing copied
            r = self.run_gen("--socket", d.sock, "--tokenizer", tok, "--prompt", "Describe.",
                             "--image", img_path("png_28x28.png"), "--image",
                             img_path("webp_lossy_160x120.webp"), "--image",
                             img_path("png_28x28.png"), "--echo", "--json",
                             "--max-tokens", "2", "--timeout", "10000")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(json.loads(r.stdout)["transport"],
                             {"images_preprocessed": 2, "images_reused": 1,
                              "tensors_copied": 0, "bytes_copied": 0})
            with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
                json.dump([{"role": "user", "content": [
                    {"type": "image", "path": img_path("jpeg_exif6_90x60.jpg")},
                    {"type": "text", "text": "What is it?"}]}], f)
                f.flush()
                r = self.run_gen("--socket", d.sock, "--tokenizer", tok, "--chat", f.name,
                                 "--echo", "--ids", "--max-tokens", "2", "--timeout", "10000")
                self.assertEqual(r.returncode, 0, r.stderr)
                r = self.run_gen("--socket", d.sock, "--tokenizer", tok, "--chat", f.name,
                                 "--image", img_path("png_28x28.png"))
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertIn("--image goes with --prompt", r.stderr)
            with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
                json.dump([{"role": "user", "content": [
                    {"type": "image", "path": img_path("bad/ratio201_1x201.png")}]}], f)
                f.flush()
                r = self.run_gen("--socket", d.sock, "--tokenizer", tok, "--chat", f.name)
                self.assertEqual(r.returncode, 1)
                self.assertIn("absolute aspect ratio must be smaller than 200, got 201.0",
                              r.stderr)
            r = self.run_gen("--socket", d.sock, "--tokenizer", tok, "--prompt", "x",
                             "--image", img_path("bad/image.gif"))
            self.assertEqual(r.returncode, 1)
            self.assertIn("image.gif: GIF images are not supported", r.stderr)
            # a sound header over a truncated scan: the prompt is built from the header's grid,
            # the request's preprocessing refuses the file in the decoder's words
            r = self.run_gen("--socket", d.sock, "--tokenizer", tok, "--prompt", "x",
                             "--image", img_path("bad/truncated.jpg"), "--echo")
            self.assertEqual(r.returncode, 1)
            self.assertIn("truncated.jpg: truncated JPEG (premature end of data)", r.stderr)
            r = self.run_gen("--socket", d.sock, "--tokenizer", tok, "--prompt", "x",
                             "--image", img_path("png_28x28.png"), "--max-pixels", "-3")
            self.assertEqual(r.returncode, 2, r.stderr)

            # --min-pixels / --max-pixels reach the grid: 448x448 is 256 pads, 4 under
            # --max-pixels 3136; 28x28 is 4 pads (min_pixels 3136), 64 under --min-pixels 50176
            def prompt_len(image, *flags):
                r = self.run_gen("--socket", d.sock, "--tokenizer", tok, "--prompt", "x",
                                 "--image", img_path(image), *flags, "--echo", "--json",
                                 "--max-tokens", "1", "--timeout", "10000")
                self.assertEqual(r.returncode, 0, r.stderr)
                return json.loads(r.stdout)["usage"]["prompt_tokens"]
            big = prompt_len("jpeg_448x448.jpg")
            self.assertEqual(prompt_len("jpeg_448x448.jpg", "--max-pixels", "3136"), big - 252)
            small = prompt_len("png_28x28.png")
            self.assertEqual(prompt_len("png_28x28.png", "--min-pixels", "50176"), small + 60)
        finally:
            d.stop()

    def test_wrong_pad_count(self):
        """A prompt whose image-pad run is one short of the image's tokens: vlmd refuses the
        request with the run's position and both counts (a VlmError, EINVAL); the right count is
        then answered on the same connection."""
        tok = os.path.join(harness.TOK_DIR, "tokenizer.json")
        d = harness.Daemon(ckpt=None, extra_mkmodel=("--preset", "tiny", "--tokenizer", tok))
        try:
            with Client(d.sock) as cl:
                img = cl.image(img_path("png_rgba_120x90.png"))
                pad = vlmclient.Tokenizer(tok).token_to_id("<|image_pad|>")
                bad = [1, 2] + [pad] * (img.tokens - 1) + [3]
                with self.assertRaises(VlmError) as cm:
                    list(cl.generate(bad, MultiMediaInfo().add_image(pad, img), max_tokens=2,
                                     timeout=10))
                self.assertEqual(cm.exception.errno, errno.EINVAL)
                self.assertIn("run 0 at 2: %d tokens, tensor %d rows" % (img.tokens - 1,
                                                                        img.tokens),
                              str(cm.exception))
                good = [1, 2] + [pad] * img.tokens + [3]
                out = list(cl.generate(good, MultiMediaInfo().add_image(pad, img), max_tokens=2,
                                       timeout=10))
                self.assertEqual(len(out), 2)
        finally:
            d.stop()

    def test_no_tower(self):
        """vlm-generate --image on a checkpoint without vision weights: exit 1 with vlmd's reason
        (the grid came from the header, the refusal from vlmd); a text prompt is still answered,
        and Python's request gets the same reason as a VlmError."""
        tok = os.path.join(harness.TOK_DIR, "tokenizer.json")
        d = harness.Daemon(ckpt=None, extra_mkmodel=("--preset", "tiny", "--vision-layers", "0",
                                                     "--tokenizer", tok))
        try:
            r = self.run_gen("--socket", d.sock, "--model-dir", d.model, "--prompt", "x",
                             "--image", img_path("png_28x28.png"), "--max-tokens", "2",
                             "--timeout", "10000")
            self.assertEqual(r.returncode, 1, r.stderr)
            self.assertIn("item 0: model has no vision tower", r.stderr)
            r = self.run_gen("--socket", d.sock, "--model-dir", d.model, "--prompt", "x",
                             "--max-tokens", "2", "--timeout", "10000")
            self.assertEqual(r.returncode, 0, r.stderr)
            with Client(d.sock) as cl:
                img = cl.image(img_path("png_28x28.png"))
                pad = vlmclient.Tokenizer(tok).token_to_id("<|image_pad|>")
                with self.assertRaises(VlmError) as cm:
                    list(cl.generate([1] + [pad] * img.tokens + [2],
                                     MultiMediaInfo().add_image(pad, img), max_tokens=2,
                                     timeout=10))
                self.assertIn("model has no vision tower", str(cm.exception))
                self.assertTrue(cl.alive)
        finally:
            d.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
