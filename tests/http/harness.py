"""Shared helpers of the http suite: a real vlmd on a tiny checkpoint (vlm-mkmodel fitted to the
real Qwen2 tokenizer) and a real vlm-serve in front of it, both as child processes; raw HTTP.

meson passes VLMD, VLM_MKMODEL, VLM_SERVE, VLM_GENERATE and VLM_SRCDIR in the environment.
Only 127.0.0.1 is ever contacted.
"""

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time


def env(name):
    v = os.environ.get(name)
    if not v:
        sys.exit("%s is not set (run through meson test)" % name)
    return v


SRCDIR = env("VLM_SRCDIR")
TOKENIZER = os.path.join(SRCDIR, "tests", "tokenizer", "data", "tokenizer.json")


def child_env():
    e = dict(os.environ)
    if "VLM_CHILD_ASAN_OPTIONS" in e:
        e["ASAN_OPTIONS"] = e["VLM_CHILD_ASAN_OPTIONS"]
    return e


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


class Stack:
    """A tmp folder with a tiny model, vlmd and vlm-serve. Use as a context manager."""

    def __init__(self, serve_args=(), vlmd_args=(), gen_config=None, start_vlmd=True,
                 mkmodel_args=("--preset", "tiny")):
        self.dir = tempfile.mkdtemp(prefix="vlm-http-")
        self.sock = os.path.join(self.dir, "vlmd.sock")
        self.model = os.path.join(self.dir, "model")
        self.serve_args = list(serve_args)
        self.vlmd_args = list(vlmd_args)
        self.vlmd = self.serve = None
        self.port = None
        subprocess.run([env("VLM_MKMODEL")] + list(mkmodel_args) + ["--tokenizer", TOKENIZER,
                        self.model], check=True, stdout=subprocess.DEVNULL, env=child_env())
        if gen_config is not None:
            path = os.path.join(self.model, "generation_config.json")
            with open(path) as f:
                g = json.load(f)
            g.update(gen_config)
            with open(path, "w") as f:
                json.dump(g, f)
        if start_vlmd:
            self.start_vlmd()
        self.start_serve()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def start_vlmd(self, extra=()):
        if os.path.exists(self.sock):   # left by a killed vlmd: wait for the new one's
            os.unlink(self.sock)
        self.vlmd_log = open(os.path.join(self.dir, "vlmd.log"), "ab")
        self.vlmd = subprocess.Popen([env("VLMD"), "--socket", self.sock, "--model", self.model,
                                      "--kv-memory", "64M", "--threads", "1"] + self.vlmd_args +
                                     list(extra), stdout=self.vlmd_log, stderr=self.vlmd_log,
                                     env=child_env())
        for _ in range(600):
            if os.path.exists(self.sock):
                return
            check(self.vlmd.poll() is None, "vlmd exited: %s" % self.log("vlmd.log"))
            time.sleep(0.05)
        raise AssertionError("vlmd did not create its socket")

    def stop_vlmd(self):
        if self.vlmd:
            self.vlmd.send_signal(signal.SIGTERM)
            rc = self.vlmd.wait(60)
            check(rc == 0, "vlmd exited %s: %s" % (rc, self.log("vlmd.log")))
            self.vlmd = None

    def start_serve(self):
        self.serve_err = open(os.path.join(self.dir, "serve.log"), "ab")
        args = [env("VLM_SERVE"), "--model-dir", self.model, "--socket", self.sock,
                "--host", "127.0.0.1", "--port", "0"] + self.serve_args
        self.serve = subprocess.Popen(args, stderr=subprocess.PIPE, env=child_env())
        line = self.serve.stderr.readline().decode()
        m = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        if not m:
            self.serve.kill()
            raise AssertionError("vlm-serve did not start: %r %s" %
                                 (line, self.serve.stderr.read().decode()))
        self.port = int(m.group(1))
        self.url = "http://127.0.0.1:%d" % self.port
        # the rest of its stderr goes to a file (a pipe nobody reads would block it)
        import threading

        def pump(src, dst):
            for chunk in iter(lambda: src.read1(4096), b""):
                dst.write(chunk)
                dst.flush()
        self.pump = threading.Thread(target=pump, args=(self.serve.stderr, self.serve_err),
                                     daemon=True)
        self.pump.start()

    def stop_serve(self):
        """SIGTERM; vlm-serve must exit 0 (in sanitizer builds: with no leak)."""
        if self.serve:
            self.serve.send_signal(signal.SIGTERM)
            rc = self.serve.wait(60)
            self.pump.join(5)
            self.serve = None
            check(rc == 0, "vlm-serve exited %s: %s" % (rc, self.log("serve.log")))

    def log(self, name):
        try:
            with open(os.path.join(self.dir, name), errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def close(self):
        try:
            self.stop_serve()
            self.stop_vlmd()
        finally:
            for p in (self.serve, self.vlmd):
                if p and p.poll() is None:
                    p.kill()
                    p.wait()
            shutil.rmtree(self.dir, ignore_errors=True)

    # ---- HTTP ----
    def request(self, method, path, body=None, headers=None, timeout=120):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, dict(r.getheaders()), data

    def post(self, path, body, headers=None):
        st, _, data = self.request("POST", path, body, headers)
        try:
            return st, json.loads(data)
        except ValueError:
            return st, data

    def metrics(self):
        st, _, data = self.request("GET", "/metrics")
        check(st == 200, "/metrics: %d" % st)
        out = {}
        for line in data.decode().splitlines():
            if line and not line.startswith("#"):
                k, v = line.rsplit(" ", 1)
                out[k] = float(v)
        return out


def wait_for(pred, what, timeout=60):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


def raw_http(port, data, read=True, timeout=60):
    """Sends raw bytes; returns everything the server sent until it closed (read=True)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(data)
    if not read:
        return s
    out = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        out += b
    s.close()
    return out


def split_response(raw):
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for l in lines[1:]:
        k, _, v = l.partition(":")
        headers[k.strip().lower()] = v.strip()
    if headers.get("transfer-encoding") == "chunked":
        out, rest = b"", body
        while True:
            size_line, _, rest = rest.partition(b"\r\n")
            n = int(size_line.split(b";")[0], 16)
            if n == 0:
                break
            out += rest[:n]
            rest = rest[n + 2:]
        body = out
    return status, headers, body


def run(tests):
    """Runs test functions in order, prints each, exits 1 on the first failure."""
    for t in tests:
        t0 = time.monotonic()
        try:
            t()
        except Exception:
            import traceback
            traceback.print_exc()
            print("FAIL %s" % t.__name__)
            sys.exit(1)
        print("ok   %s (%.2f s)" % (t.__name__, time.monotonic() - t0))
        sys.stdout.flush()
