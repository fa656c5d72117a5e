#!/usr/bin/env python3
"""What one image costs the client per request, three ways, interleaved in one run (run by hand;
the figures are ratios between the ways, taken in the same run):

    BUILD=build; VLM_LIBRARY=$BUILD/client/libvlmclient.so VLMD=$BUILD/daemon/vlmd \\
    VLM_MKMODEL=$BUILD/tools/vlm-mkmodel VLM_SRCDIR=. VLM_PYDIR=python \\
    python3 tests/vision/bench_arena_path.py [IMAGE] [--iters 12]

  copy        vlmclient.Image(src) then vlm_request_add_image: a buffer of its own, then a copy
              into the connection's arena (what the tools did before they moved to the arena);
  arena_miss  vlm_request_add_image_file into a request: decoded and preprocessed straight into
              the arena (each round uses another max_pixels, so the image is new to the memo);
  arena_hit   the same file and settings again (the next turn of a conversation): found in the
              connection's memo, so only the file's read and SHA-256 remain.

Thread CPU time (time.thread_time), best and median. A model-less vlmd is started (the requests
are never submitted). Default image: tests/vision/images/jpeg_1280x720.jpg.
"""
import argparse
import ctypes
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import harness  # noqa: E402
from vlmclient import Client, Image, _lib  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("image", nargs="?",
                default=os.path.join(harness.SRCDIR, "tests/vision/images/jpeg_1280x720.jpg"))
ap.add_argument("--iters", type=int, default=12)
a = ap.parse_args()
path = os.fsencode(a.image)
d = harness.Daemon(model=False)
try:
    cl = Client(d.sock, arena_bytes=512 << 20)
    res = {"copy": [], "arena_miss": [], "arena_hit": []}
    g = (ctypes.c_uint32 * 3)()

    def request():
        req = ctypes.c_void_p()
        _lib.check(_lib.vlm_request_new(cl._h, ctypes.byref(req)), "request", True)
        return req

    for it in range(a.iters):
        req = request()
        t0 = time.thread_time()
        im = Image(a.image)
        _lib.check(_lib.vlm_request_add_image(req, 151655, im.handle), "copy", True)
        res["copy"].append(time.thread_time() - t0)
        im.close()
        _lib.vlm_request_free(req)
        o = _lib.ImageOpts()
        o.max_pixels = 12845056 - it
        for way in ("arena_miss", "arena_hit"):
            req = request()
            t0 = time.thread_time()
            _lib.check(_lib.vlm_request_add_image_file(req, 151655, path, None, ctypes.byref(o),
                                                       g, None), way, True)
            res[way].append(time.thread_time() - t0)
            _lib.vlm_request_free(req)
    print("image %s, grid %s, connection %s" % (a.image, tuple(g), cl.stats()))
    for k, v in res.items():
        print("%-10s best %7.2f ms  median %7.2f ms" % (k, min(v) * 1e3,
                                                       statistics.median(v) * 1e3))
    cl.close()
finally:
    d.stop()
