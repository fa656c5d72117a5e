"""vlm-serve over raw sockets and plain HTTP (no client library): SSE framing byte for byte,
every validation error with its field, body limits, slow and vanishing clients, the API key,
vlmd's refusals (429) and absence (503, then reconnection), checkpoint defaults, and the image URL
policy (file:// and http(s) allow-lists, with a local HTTP server on 127.0.0.1), every kind of
bad image (a 400 naming the part, then still serving), images on a checkpoint without a tower."""

import base64
import http.server
import json
import os
import re
import signal
import socket
import struct
import subprocess
import threading
import time
import zlib

from harness import (Stack, check, child_env, env, raw_http, run, split_response, wait_for)

A = None   # vlm-serve with --max-body 1M, media allow-lists, vlmd max-running 1 / max-waiting 1
MSGS = [{"role": "user", "content": "Say something."}]


def body(**kw):
    b = {"model": "model", "messages": MSGS, "max_tokens": 8, "temperature": 0}
    b.update(kw)
    return b


def compact(obj):
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def http_req(port, path, payload, extra=b""):
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return (b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\n%sContent-Length: %d\r\n\r\n" % (path.encode(), extra, len(data))
            + data)


def test_sse_framing():
    raw = raw_http(A.port, http_req(A.port, "/v1/chat/completions",
                                    body(stream=True, stream_options={"include_usage": True})))
    st, hd, data = split_response(raw)
    check(st == 200 and hd.get("content-type") == "text/event-stream", "status/headers %d %r" % (st, hd))
    check(data.endswith(b"data: [DONE]\n\n"), "does not end with [DONE]: %r" % data[-60:])
    events = data[:-len(b"data: [DONE]\n\n")]
    check(events.endswith(b"\n\n") and events.startswith(b"data: "), "framing %r" % events[:40])
    objs = []
    for ev in events[:-2].split(b"\n\n"):
        check(ev.startswith(b"data: ") and b"\n" not in ev, "event %r" % ev[:80])
        o = json.loads(ev[6:])
        check(compact(o) == ev[6:], "not compact JSON: %r" % ev[:120])
        objs.append(o)
    check(len({o["id"] for o in objs}) == 1 and len({o["created"] for o in objs}) == 1, "ids/created vary")
    check(all(o["object"] == "chat.completion.chunk" for o in objs), "object")
    first, last = objs[0], objs[-1]
    check(first["choices"] == [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                "logprobs": None, "finish_reason": None}], "role chunk %r" % first)
    check(last["choices"] == [] and last["usage"]["completion_tokens"] > 0, "usage chunk %r" % last)
    check(all("usage" in o and o["usage"] is None for o in objs[:-1]), "usage null on the others")
    fins = [o for o in objs[:-1] if o["choices"][0]["finish_reason"]]
    check(len(fins) == 1 and fins[0] is objs[-2], "finish chunk not last: %r" % fins)
    text = "".join(o["choices"][0]["delta"].get("content", "") for o in objs[1:-1])
    st, whole = A.post("/v1/chat/completions", body())
    check(st == 200 and text == whole["choices"][0]["message"]["content"], "stream %r != %r" %
          (text, whole))
    check(last["usage"] == whole["usage"] | {"prompt_tokens_details": last["usage"]["prompt_tokens_details"]},
          "usage differs %r %r" % (last["usage"], whole["usage"]))


BAD = [
    ("model", 5), ("messages", "hi"), ("messages", []), ("temperature", "hot"), ("temperature", -1),
    ("top_p", 0), ("top_p", 1.5), ("top_k", 1.5), ("min_p", 2), ("max_tokens", 0),
    ("max_completion_tokens", "5"), ("n", 0), ("n", 100), ("stop", 5), ("stop", [""]),
    ("stop", ["a"] * 17), ("stop", "x" * 257), ("stop", ["ok", "y" * 300]), ("seed", 1.5), ("logprobs", "yes"), ("top_logprobs", 25),
    ("stream", "yes"), ("presence_penalty", 3), ("frequency_penalty", -3),
    ("repetition_penalty", 0), ("stop_token_ids", [-1]), ("stop_token_ids", "x"),
    ("ignore_eos", 1), ("response_format", {"type": "json_object"}), ("tools", [{"type": "function"}]),
]


def test_validation():
    for field, value in BAD:
        st, r = A.post("/v1/chat/completions", body(**{field: value}))
        want = 404 if field == "model" and isinstance(value, str) else 400
        check(st == want and r["error"]["param"] == field and r["error"]["code"] == want and
              r["error"]["type"] == "BadRequestError", "%s=%r: %d %r" % (field, value, st, r))
    cases = [
        (body(stream_options={"include_usage": True}), "stream_options"),
        (body(mm_processor_kwargs={"max_pixels": "x"}), "mm_processor_kwargs.max_pixels"),
        (body(mm_processor_kwargs={"max_pixels": 10 ** 12}), "mm_processor_kwargs.max_pixels"),
        (body(mm_processor_kwargs={"min_pixels": 5000, "max_pixels": 4000}), "mm_processor_kwargs"),
        (body(messages=[{"role": "wizard", "content": "x"}]), "messages[0].role"),
        (body(messages=[{"role": "user", "content": 5}]), "messages[0].content"),
        (body(messages=[{"role": "user"}]), "messages[0].content"),
        (body(messages=[MSGS[0], {"role": "user", "content": [{"type": "audio"}]}]), "messages[1].content[0]"),
        (body(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": 5}}]}]),
         "messages[0].content[0]"),
        (body(messages=[{"role": "user", "content": [{"type": "text"}]}]), "messages[0].content[0]"),
    ]
    for b, param in cases:
        st, r = A.post("/v1/chat/completions", b)
        check(st == 400 and r["error"]["param"] == param, "%s: %d %r" % (param, st, r))
    for b, param in [({"prompt": 5}, "prompt"), ({}, "prompt"), ({"prompt": [1, -1]}, "prompt"),
                     ({"prompt": "x", "echo": True}, "echo"), ({"prompt": "x", "logprobs": 30}, "logprobs"),
                     ({"prompt": ["a", 5]}, "prompt[1]")]:
        st, r = A.post("/v1/completions", b)
        check(st == 400 and r["error"]["param"] == param, "completions %s: %d %r" % (param, st, r))
    # unknown fields are ignored, null means unset
    st, r = A.post("/v1/chat/completions", body(user="x", some_future_field={"a": 1}, top_p=None))
    check(st == 200, "unknown fields: %d %r" % (st, r))
    # a prompt longer than vlmd's context: vlmd's refusal as a 400
    st, r = A.post("/v1/chat/completions", body(max_tokens=100000))
    check(st == 400 and "max-model-len" in r["error"]["message"], "too long: %d %r" % (st, r))


def test_malformed():
    for payload in [b"{", b"not json", b"", b"[1,2]", b'{"messages": [}', b"\xff\xfe"]:
        st, hd, data = split_response(raw_http(A.port, http_req(A.port, "/v1/chat/completions", payload)))
        r = json.loads(data)
        check(st == 400 and r["error"]["code"] == 400 and r["error"]["message"], "%r: %d %r" % (payload, st, r))
    st, hd, _ = A.request("GET", "/v1/chat/completions")
    check(st == 405, "GET chat: %d" % st)
    st, hd, data = A.request("GET", "/nope")
    check(st == 404 and json.loads(data)["error"]["code"] == 404, "unknown path %d" % st)


def test_huge_body():
    # announced too large: refused before the body is read
    s = raw_http(A.port, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n"
                 b"Content-Type: application/json\r\n\r\n", read=False)
    out = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        out += b
        if b"\r\n\r\n" in out and b"}}" in out:
            break
    s.close()
    st, _, data = split_response(out)
    check(st == 413 and json.loads(data)["error"]["code"] == 413, "content-length: %d %r" % (st, data))
    # chunked, no length: counted as it comes
    chunk = b"x" * 65536
    req = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
           b"Connection: close\r\n\r\n" + (b"%x\r\n%s\r\n" % (len(chunk), chunk)) * 24 + b"0\r\n\r\n")
    st, _, data = split_response(raw_http(A.port, req))
    check(st == 413, "chunked: %d %r" % (st, data[:200]))
    # just below the limit is read (and refused for what it is: not JSON)
    st, _, data = split_response(raw_http(A.port, http_req(A.port, "/v1/chat/completions", b" " * 1000000)))
    check(st == 400, "1 MB of spaces: %d" % st)


def test_slow_client():
    req = http_req(A.port, "/v1/chat/completions", body())
    s = socket.create_connection(("127.0.0.1", A.port), timeout=60)
    for i in range(0, len(req), 7):   # a trickle: 7 bytes at a time
        s.sendall(req[i:i + 7])
        time.sleep(0.002)
    out = b""
    while True:
        b = s.recv(1)                  # and read one byte at a time
        if not b:
            break
        out += b
    s.close()
    st, _, data = split_response(out)
    check(st == 200 and json.loads(data)["choices"], "slow client: %d" % st)


def inflight(stack):
    return stack.metrics().get("vlm_serve_requests_in_flight", -1)


def vlmd_cancelled(stack):
    """vlmd's count of cancelled requests (vlmctl info; admin only), or None."""
    p = subprocess.run([env("VLMCTL"), "--socket", stack.sock, "--json", "info"],
                       capture_output=True, text=True, env=child_env())
    if p.returncode == 4:
        return None
    check(p.returncode == 0, "vlmctl: %s" % p.stderr)
    return json.loads(p.stdout)["requests"]["cancelled"]


def vlmd_requests(stack):
    """vlmd's requests through vlmctl (admin: root or admin-gid), or None when not allowed."""
    p = subprocess.run([env("VLMCTL"), "--socket", stack.sock, "--json", "requests"],
                       capture_output=True, text=True, env=child_env())
    if p.returncode == 4:
        return None
    check(p.returncode == 0, "vlmctl: %s" % p.stderr)
    return json.loads(p.stdout)["requests"]


BIG = dict(n=16, max_tokens=3000, ignore_eos=True, stream=True, logprobs=True, top_logprobs=20,
           temperature=1.0)


def test_vlmd_busy_429():
    # vlmd runs 1 and queues 1: the 3rd of 16 choices submitted together is refused for load
    st, r = A.post("/v1/chat/completions", body(n=16, max_tokens=3000, ignore_eos=True))
    check(st == 429 and r["error"]["type"] == "RateLimitError" and "busy" in r["error"]["message"],
          "vlmd full: %d %r" % (st, r))
    wait_for(lambda: inflight(A) == 0, "in-flight 0 after the 429")
    # vlmd finishes cancelling the two it had admitted at its next step: then it serves again
    wait_for(lambda: A.post("/v1/chat/completions", body())[0] == 200, "a 200 after the 429")


def test_vanishing_client():
    with Stack(serve_args=["--max-concurrent", "1"]) as D:
        before = D.metrics().get("vlm_serve_cancelled_total", 0)
        s = raw_http(D.port, http_req(D.port, "/v1/chat/completions", body(**BIG)), read=False)
        got = s.recv(4096)
        check(b" 200 " in got.split(b"\r\n")[0], "stream did not start: %r" % got[:100])
        # the stream is in flight (and its client reads nothing): one more is refused
        st, r = D.post("/v1/chat/completions", body())
        check(st == 429 and "max-concurrent" in r["error"]["message"], "max-concurrent: %d %r" % (st, r))
        s.close()   # the client vanishes mid-stream
        wait_for(lambda: inflight(D) == 0, "the vanished stream to be released")
        check(D.metrics()["vlm_serve_cancelled_total"] >= before + 1, "no cancellation counted")
        reqs = vlmd_requests(D)
        if reqs is None:
            print("     (vlmctl needs root or admin-gid: vlmd's own request list not checked)")
        else:
            # cancelled in vlmd, not run to their 3000 tokens
            wait_for(lambda: vlmd_requests(D) == [], "vlmd to have no requests left")
            check(vlmd_cancelled(D) == 16, "vlmd cancelled %r of 16" % vlmd_cancelled(D))
        st, r = D.post("/v1/chat/completions", body())
        check(st == 200, "after the vanished client: %d" % st)


def test_non_reading_client():
    # a client that reads nothing of a long stream does not hold up another one
    with Stack() as N:
        s = raw_http(N.port, http_req(N.port, "/v1/chat/completions",
                                      body(n=1, max_tokens=3000, ignore_eos=True, stream=True,
                                           logprobs=True, top_logprobs=20)), read=False)
        st, r = N.post("/v1/chat/completions", body())
        check(st == 200, "beside a stalled reader: %d" % st)
        s.close()
        wait_for(lambda: inflight(N) == 0, "the stalled stream to be released")


def test_endpoints():
    st, _, data = A.request("GET", "/version")
    v = json.loads(data)
    check(st == 200 and v["version"] and v["libvlmclient"], "/version %r" % v)
    st, hd, data = A.request("GET", "/metrics")
    text = data.decode()
    check(st == 200 and hd["Content-Type"].startswith("text/plain"), "/metrics %d" % st)
    check('vlm_serve_http_requests_total{endpoint="/v1/chat/completions",status="200"}' in text,
          "own metrics missing")
    if vlmd_requests(A) is not None:   # admin: vlmd's metrics are passed through
        m = re.search(r"^vlmd_generation_tokens(?:_total)? (\d+)", text, re.M)
        check(m and int(m.group(1)) > 0, "vlmd's metrics missing: %s" % text[-500:])
    else:
        print("     (not an admin of vlmd: its metrics are not passed through, as documented)")
    st, _, data = A.request("GET", "/health")
    check(st == 200 and json.loads(data)["status"] == "ok", "/health %d" % st)


def test_vlmd_restart():
    A.stop_vlmd()
    wait_for(lambda: A.request("GET", "/health")[0] == 503, "/health 503 without vlmd")
    st, r = A.post("/v1/chat/completions", body())
    check(st == 503 and r["error"]["type"] == "ServiceUnavailableError", "no vlmd: %d %r" % (st, r))
    A.start_vlmd()
    # the first request after vlmd's return is served (no back-off to wait out)
    st, r = A.post("/v1/chat/completions", body())
    check(st == 200, "first request after vlmd came back: %d %r" % (st, r))
    check(A.request("GET", "/health")[0] == 200, "/health after vlmd came back")
    # vlmd restarts while nothing is in flight: the stale connection is noticed, not used
    A.stop_vlmd()
    A.start_vlmd()
    st, r = A.post("/v1/chat/completions", body())
    check(st == 200, "after a restart nobody saw: %d %r" % (st, r))


def test_stalled_reader_dropped():
    # a client that stops reading a stream is dropped after --idle-timeout, and its requests
    # are cancelled in vlmd
    with Stack(serve_args=["--idle-timeout", "1"]) as I:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)   # little room to hide in
        s.connect(("127.0.0.1", I.port))
        s.sendall(http_req(I.port, "/v1/chat/completions", body(**BIG)))
        got = s.recv(4096)
        check(b" 200 " in got.split(b"\r\n")[0], "stream did not start: %r" % got[:100])
        wait_for(lambda: inflight(I) == 0, "the stalled reader to be dropped", timeout=120)
        check(I.metrics()["vlm_serve_cancelled_total"] >= 1, "its requests were not cancelled")
        reqs = vlmd_requests(I)
        if reqs is None:
            print("     (vlmctl needs root or admin-gid: vlmd's own request list not checked)")
        else:
            wait_for(lambda: vlmd_requests(I) == [], "vlmd to have no requests left")
            check(vlmd_cancelled(I) == 16, "vlmd cancelled %r of 16" % vlmd_cancelled(I))
        s.close()
        st, r = I.post("/v1/chat/completions", body())
        check(st == 200, "after the dropped reader: %d" % st)


def test_stream_error():
    # vlmd dies mid-stream: the stream ends with an error event and [DONE] (after the 200)
    with Stack() as E:
        s = raw_http(E.port, http_req(E.port, "/v1/chat/completions",
                                      body(n=16, max_tokens=3000, ignore_eos=True, stream=True)),
                     read=False)
        got = b""
        while b"\"content\":\"" not in got.replace(b'"content":""', b""):
            b = s.recv(65536)
            check(b, "stream ended early: %r" % got[-200:])
            got += b
        E.vlmd.kill()
        E.vlmd.wait()
        E.vlmd = None
        while True:
            b = s.recv(1 << 20)
            if not b:
                break
            got += b
        s.close()
        st, hd, data = split_response(got)
        events = data.split(b"\n\n")
        check(events[-1] == b"" and events[-2] == b"data: [DONE]", "no [DONE] at the end: %r" % events[-3:])
        err = json.loads(events[-3][6:])
        check(err["error"]["code"] == 503 and "vlmd" in err["error"]["message"], "error event %r" % err)
        E.start_vlmd()
        st, r = E.post("/v1/chat/completions", body())
        check(st == 200, "after vlmd came back: %d" % st)


# ---- images: URL policy ----

def png(w, h):
    raw = b"".join(b"\x00" + b"".join(bytes([(x * 40) % 256, (y * 60) % 256, 128])
                                       for x in range(w)) for y in range(h))
    def chunkb(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
    return (b"\x89PNG\r\n\x1a\n" + chunkb(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) +
            chunkb(b"IDAT", zlib.compress(raw)) + chunkb(b"IEND", b""))


def image_msg(url):
    return [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                         {"type": "text", "text": "What is this?"}]}]


STATES = set()


def image_ok(st, r, what, n_images=1):
    """An image the policy allows is answered (the tiny checkpoint has a vision tower)."""
    check(st == 200, "%s: %d %r" % (what, st, r))
    check(r["usage"]["prompt_tokens"] > 20 * n_images, "%s: prompt tokens %r" % (what, r["usage"]))
    STATES.add("answered")
    return True


class Files(http.server.BaseHTTPRequestHandler):
    log = []

    def do_GET(self):
        Files.log.append(self.path)
        if self.path.startswith("/redirect"):
            self.send_response(302)
            self.send_header("Location", "http://localhost:%d/img.png" % self.server.server_port)
            self.end_headers()
            return
        data = png(56, 56)
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *a):
        pass


def test_media_policy():
    media = os.path.join(A.dir, "media")
    with open(os.path.join(media, "img.png"), "wb") as f:
        f.write(png(56, 56))
    os.symlink("/etc/hostname", os.path.join(media, "escape.png"))
    for url, msg in [("file:///etc/hostname", "subpath"),
                     ("file://" + media + "/escape.png", "subpath"),
                     ("file://" + media + "/../model/config.json", "subpath"),
                     ("file://" + media + "/missing.png", "cannot open"),
                     ("data:image/png,abc", "Only base64"),
                     ("data:image/png;base64,!!!!", "not valid base64"),
                     ("ftp://127.0.0.1/x.png", "data:, file:// or http(s)")]:
        st, r = A.post("/v1/chat/completions", body(messages=image_msg(url)))
        check(st == 400 and msg in r["error"]["message"] and
              r["error"]["param"] == "messages[0].content[0]", "%s: %d %r" % (url, st, r))
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Files)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    port = srv.server_port
    try:
        Files.log.clear()
        st, r = A.post("/v1/chat/completions", body(messages=image_msg("http://localhost:%d/img.png" % port)))
        check(st == 400 and "not in --allowed-media-domains" in r["error"]["message"], "disallowed host %d %r" % (st, r))
        check(Files.log == [], "a disallowed host was contacted: %r" % Files.log)
        st, r = A.post("/v1/chat/completions", body(messages=image_msg("http://127.0.0.1:%d/redirect" % port)))
        check(st == 400 and "not in --allowed-media-domains" in r["error"]["message"], "redirect %d %r" % (st, r))
        check(Files.log == ["/redirect"], "redirect target fetched: %r" % Files.log)
        st, r = A.post("/v1/chat/completions", body(messages=image_msg("http://127.0.0.1:%d/img.png" % port)))
        check("/img.png" in Files.log, "the allowed host was not contacted")
        answered = image_ok(st, r, "http image")
        st, rf = A.post("/v1/chat/completions", body(messages=image_msg("file://" + media + "/img.png")))
        answered &= image_ok(st, rf, "file image")
        b64 = base64.b64encode(png(56, 56)).decode()
        st, rd = A.post("/v1/chat/completions", body(messages=image_msg("data:image/png;base64," + b64)))
        answered &= image_ok(st, rd, "data image")
        # the same bytes by the three routes: the same prompt and greedy answer
        got = [(x["usage"]["prompt_tokens"], x["choices"][0]["message"]["content"]) for x in (r, rf, rd)]
        check(got[0] == got[1] == got[2], "http / file / data answers differ: %r" % got)
        # more images than --max-images (4 here): refused before any is fetched
        Files.log.clear()
        many = [{"role": "user", "content": [{"type": "image_url", "image_url": {
            "url": "http://127.0.0.1:%d/img.png" % port}}] * 5}]
        st, r = A.post("/v1/chat/completions", body(messages=many))
        check(st == 400 and "--max-images" in r["error"]["message"] and
              r["error"]["param"] == "messages[0].content[4]", "too many images: %d %r" % (st, r))
        check(len(Files.log) == 4, "fetched %r" % Files.log)
        # three images in one message: data, file and http
        three = [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64," + b64}},
            {"type": "image_url", "image_url": {"url": "file://" + media + "/img.png"}},
            {"type": "image_url", "image_url": {"url": "http://127.0.0.1:%d/img.png" % port}},
            {"type": "text", "text": "Compare them."}]}]
        st, r = A.post("/v1/chat/completions", body(messages=three, mm_processor_kwargs={"max_pixels": 56 * 56}))
        answered &= image_ok(st, r, "three images", 3)
        # bytes that are no image: the library's decoder refuses them, named by part
        bad = base64.b64encode(b"\x89PNG\r\n\x1a\nnot really").decode()
        st, r = A.post("/v1/chat/completions", body(messages=image_msg("data:image/png;base64," + bad)))
        check(st == 400 and r["error"]["param"] == "messages[0].content[0]" and
              ("could not be used" in r["error"]["message"] or "image support" in r["error"]["message"]),
              "corrupt image: %d %r" % (st, r))
        # a sound header over damaged image data (a byte of the IDAT stream flipped): the header
        # gives the grid, the request's preprocessing refuses it: the same 400, naming the part,
        # in the decoder's words
        dmg = bytearray(png(56, 56))
        dmg[50] ^= 0xff
        cut = base64.b64encode(bytes(dmg)).decode()
        two = [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64," + b64}},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64," + cut}}]}]
        st, r = A.post("/v1/chat/completions", body(messages=two))
        check(st == 400 and r["error"]["param"] == "messages[0].content[1]" and
              ("could not be used: corrupt PNG" in r["error"]["message"] or
               "image support" in r["error"]["message"]),
              "image damaged after its header: %d %r" % (st, r))
        for s_ in sorted(STATES):
            print("     (images: %s)" % s_)
    finally:
        srv.shutdown()


def test_signals_blocked_in_every_thread():
    # SIGTERM must reach vlm-serve's sigwait, never a thread that would die of it: every thread
    # but the main one (the kernel unblocks the waited set while it sits in sigwait) -- the
    # backend's router, MHD's -- blocks SIGINT and SIGTERM
    pid = A.serve.pid
    tasks = [t for t in os.listdir("/proc/%d/task" % pid) if t != str(pid)]
    check(len(tasks) >= 2, "vlm-serve threads: %r" % tasks)
    for t in tasks:
        with open("/proc/%d/task/%s/status" % (pid, t)) as f:
            blk = [int(l.split()[1], 16) for l in f if l.startswith("SigBlk:")][0]
        for sig in (signal.SIGINT, signal.SIGTERM):
            check(blk & (1 << (sig - 1)), "thread %s of vlm-serve does not block %s (SigBlk %x)" %
                  (t, sig.name, blk))


def test_api_key_and_defaults():
    # checkpoint defaults: generation_config.json says top_k 1 (greedy), the request says nothing
    with Stack(serve_args=["--api-key", "s3cret"], gen_config={"top_k": 1}) as B:
        b = body()
        del b["temperature"]
        for hdr, want in [({}, 401), ({"Authorization": "Bearer wrong"}, 401),
                          ({"Authorization": "s3cret"}, 401), ({"Authorization": "Bearer s3cret"}, 200)]:
            st, r = B.post("/v1/chat/completions", b, headers=hdr)
            check(st == want, "key %r: %d %r" % (hdr, st, r))
            if want == 401:
                check(r["error"]["code"] == 401, "401 body %r" % r)
        st, _, _ = B.request("GET", "/v1/models")
        check(st == 401, "/v1/models without a key: %d" % st)
        check(B.request("GET", "/health")[0] == 200, "/health needs no key")
        key = {"Authorization": "Bearer s3cret"}
        texts = set()
        for seed in (1, 2, 3):
            st, r = B.post("/v1/chat/completions", dict(b, seed=seed, temperature=1.0, max_tokens=12), headers=key)
            texts.add(r["choices"][0]["message"]["content"])
        st, g = B.post("/v1/chat/completions", dict(b, temperature=0, max_tokens=12), headers=key)
        check(texts == {g["choices"][0]["message"]["content"]},
              "top_k 1 from generation_config.json not applied: %r vs %r" % (texts, g))
        # file:// without --allowed-local-media-path
        st, r = B.post("/v1/chat/completions", body(messages=image_msg("file:///etc/hostname")), headers=key)
        check(st == 400 and "without `--allowed-local-media-path`" in r["error"]["message"], "file: %r" % r)


BAD_IMAGES = os.path.join(env("VLM_SRCDIR"), "tests", "vision", "images", "bad")


def jpeg_claiming(w, h):
    """A committed JPEG whose SOF header claims w x h (its data stays the small image's)."""
    path = os.path.join(env("VLM_SRCDIR"), "tests", "vision", "images", "jpeg_cmyk_96x64.jpg")
    with open(path, "rb") as f:
        d = bytearray(f.read())
    at = next(i for i in range(2, len(d) - 9) if d[i] == 0xff and 0xc0 <= d[i + 1] <= 0xc2)
    d[at + 5:at + 9] = struct.pack(">HH", h, w)
    return bytes(d)


def test_bad_images():
    """Every kind of bad image the issue lists, as a data URL and as a file:// path: a 400 that
    names the part and gives the library's reason (vlm-serve's /metrics counts each 400), and
    vlm-serve and vlmd keep serving images and text."""
    media = os.path.join(A.dir, "media")
    cases = [(name, open(os.path.join(BAD_IMAGES, name), "rb").read(), why) for name, why in [
        ("empty.jpg", "empty image (0 bytes)"),
        ("truncated.jpg", "truncated JPEG"),
        ("truncated.png", "corrupt PNG"),
        ("truncated.webp", "WebP"),
        ("corrupt.jpg", "corrupt JPEG"),
        ("corrupt.png", "corrupt PNG"),
        ("image.gif", "GIF images are not supported"),
        ("image.bmp", "BMP images are not supported"),
        ("text.txt", "unknown image format"),
        ("bomb_100000x100000.png", "PNG image is 100000 x 100000 = 10000000000 pixels, over the "
                                   "limit of 178956970"),
        ("ratio201_1x201.png", "absolute aspect ratio must be smaller than 200, got 201.0")]]
    cases.append(("bomb_60000x60000.jpg", jpeg_claiming(60000, 60000),
                  "JPEG image is 60000 x 60000 = 3600000000 pixels, over the limit"))
    key = 'vlm_serve_http_requests_total{endpoint="/v1/chat/completions",status="400"}'
    before = A.metrics().get(key, 0)
    for name, data, why in cases:
        with open(os.path.join(media, name), "wb") as f:
            f.write(data)
        for form, url in (("data", "data:image/png;base64," + base64.b64encode(data).decode()),
                          ("file", "file://" + os.path.join(media, name))):
            msgs = [{"role": "user", "content": [
                {"type": "text", "text": "Look:"},
                {"type": "image_url", "image_url": {"url": url}}]}]
            st, r = A.post("/v1/chat/completions", body(messages=msgs))
            check(st == 400 and r["error"]["type"] == "BadRequestError" and
                  r["error"]["param"] == "messages[0].content[1]" and
                  r["error"]["message"].startswith("the image could not be used: ") and
                  why in r["error"]["message"], "%s as %s: %d %r" % (name, form, st, r))
    # nothing broke: an image and a text request are answered
    b64 = base64.b64encode(png(56, 56)).decode()
    st, r = A.post("/v1/chat/completions", body(messages=image_msg("data:image/png;base64," + b64)))
    image_ok(st, r, "image after the bad ones")
    st, r = A.post("/v1/chat/completions", body())
    check(st == 200 and r["usage"]["completion_tokens"] > 0, "text after the bad images: %d" % st)
    after = A.metrics().get(key, 0)
    check(after - before == 2 * len(cases), "400s counted %r -> %r" % (before, after))


def test_no_tower():
    """A checkpoint without vision weights asked for an image: a 400 (the request can never be
    served: a 503 would make clients retry it) with vlmd's reason; text is still served."""
    with Stack(mkmodel_args=("--preset", "tiny", "--vision-layers", "0")) as N:
        b64 = base64.b64encode(png(56, 56)).decode()
        for _ in range(2):
            st, r = N.post("/v1/chat/completions",
                           body(messages=image_msg("data:image/png;base64," + b64)))
            check(st == 400 and r["error"]["type"] == "BadRequestError" and
                  "model has no vision tower" in r["error"]["message"],
                  "image on a checkpoint without a tower: %d %r" % (st, r))
        st, r = N.post("/v1/chat/completions", body())
        check(st == 200 and r["usage"]["completion_tokens"] > 0, "text without a tower: %d %r" % (st, r))


def test_pixel_limits():
    """The pixel bounds reach the grid through vlm-serve: jpeg_448x448.jpg is 32x32 patches (256
    image pads) by default; mm_processor_kwargs max_pixels=3136 makes it 56x56 (4 pads: 252 fewer
    prompt tokens); vlm-serve --max-pixels 3136 does the same for every request and is a ceiling
    (a request asking for more is a 400); --min-pixels / min_pixels grow png_28x28.png from 4
    pads (56x56, the checkpoint's min_pixels 3136) to 64 (224x224 = 50176)."""
    jpg = os.path.join(env("VLM_SRCDIR"), "tests", "vision", "images", "jpeg_448x448.jpg")
    small = os.path.join(env("VLM_SRCDIR"), "tests", "vision", "images", "png_28x28.png")

    def url(path):
        with open(path, "rb") as f:
            return "data:image/x;base64," + base64.b64encode(f.read()).decode()

    def prompt(S, path, **kw):
        b = body(messages=image_msg(url(path)), max_tokens=1)
        if kw:
            b["mm_processor_kwargs"] = kw
        st, r = S.post("/v1/chat/completions", b)
        check(st == 200, "%s %r: %d %r" % (os.path.basename(path), kw, st, r))
        return r["usage"]["prompt_tokens"]

    with Stack() as S:
        base = prompt(S, jpg)
        check(prompt(S, jpg, max_pixels=3136) == base - 252, "max_pixels 3136 per request")
        p28 = prompt(S, small)
        check(prompt(S, small, min_pixels=50176) == p28 + 60, "min_pixels 50176 per request")
        # a request's bound against the other side's default (the checkpoint's 3136 / 12845056):
        # the request's field is named, not the image
        for kw, msg in (({"min_pixels": 20000000}, "min_pixels 20000000 > max_pixels 12845056"),
                        ({"max_pixels": 1000}, "min_pixels 3136 > max_pixels 1000")):
            b = body(messages=image_msg(url(small)), max_tokens=1, mm_processor_kwargs=kw)
            st, r = S.post("/v1/chat/completions", b)
            check(st == 400 and r["error"]["param"] == "mm_processor_kwargs" and
                  msg in r["error"]["message"], "%r: %d %r" % (kw, st, r))
    with Stack(serve_args=["--max-pixels", "3136"]) as F:
        check(prompt(F, jpg) == base - 252, "--max-pixels 3136")
        # the flag is the server's ceiling: a request may ask for less, not for more
        b = body(messages=image_msg(url(jpg)), max_tokens=1,
                 mm_processor_kwargs={"max_pixels": 448 * 448})
        st, r = F.post("/v1/chat/completions", b)
        check(st == 400 and r["error"]["param"] == "mm_processor_kwargs.max_pixels" and
              "above this server's limit 3136" in r["error"]["message"],
              "max_pixels over --max-pixels: %d %r" % (st, r))
    # bounds that leave no image size are refused at start-up, not by every image request
    for args, msg in ((["--min-pixels", "50176", "--max-pixels", "3136"],
                       "min-pixels 50176 is above max-pixels 3136"),
                      (["--min-pixels", "20000000"],
                       "min-pixels 20000000 is above max-pixels 12845056 "
                       "(preprocessor_config.json's)")):
        p = subprocess.run([env("VLM_SERVE"), "--model-dir", A.model, "--socket", A.sock,
                            "--port", "0"] + args, capture_output=True, text=True, timeout=30,
                           env=child_env())
        check(p.returncode != 0 and msg in p.stderr, "%s: %d %s" % (args, p.returncode, p.stderr))
    with Stack(serve_args=["--min-pixels", "50176"]) as G:
        check(prompt(G, small) == p28 + 60, "--min-pixels 50176")
        check(prompt(G, small, min_pixels=3136) == p28, "a request's min_pixels under --min-pixels")


def test_media_max_bytes():
    """--media-max-bytes: an image over it (a data URL's decoded bytes, a file://, an http(s)
    download) is a 413 naming the part, before it is decoded; one under it is answered."""
    big = os.path.join(env("VLM_SRCDIR"), "tests", "vision", "images", "jpeg_448x448.jpg")
    small = os.path.join(env("VLM_SRCDIR"), "tests", "vision", "images", "png_28x28.png")
    imgs = os.path.dirname(big)
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), BigFiles)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        with Stack(serve_args=["--media-max-bytes", "10K", "--allowed-local-media-path", imgs,
                               "--allowed-media-domains", "127.0.0.1"]) as M:
            with open(big, "rb") as f:
                data = f.read()
            check(len(data) > 10240, "the big image is %d bytes" % len(data))
            BigFiles.data = data
            for form, url in (("data", "data:image/jpeg;base64," + base64.b64encode(data).decode()),
                              ("file", "file://" + big),
                              ("http", "http://127.0.0.1:%d/big.jpg" % srv.server_port)):
                msgs = [{"role": "user", "content": [
                    {"type": "text", "text": "Look:"}, {"type": "image_url", "image_url": {"url": url}}]}]
                st, r = M.post("/v1/chat/completions", body(messages=msgs))
                check(st == 413 and r["error"]["param"] == "messages[0].content[1]" and
                      "larger than media-max-bytes" in r["error"]["message"],
                      "%s over --media-max-bytes: %d %r" % (form, st, r))
            with open(small, "rb") as f:
                url = "data:image/png;base64," + base64.b64encode(f.read()).decode()
            st, r = M.post("/v1/chat/completions", body(messages=image_msg(url)))
            image_ok(st, r, "an image under --media-max-bytes")
    finally:
        srv.shutdown()


class BigFiles(http.server.BaseHTTPRequestHandler):
    data = b""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(BigFiles.data)))
        self.end_headers()
        self.wfile.write(BigFiles.data)

    def log_message(self, *a):
        pass


def test_image_larger_than_arena():
    # an image whose patches can never fit the shared arena (--arena 1M): 400, named by vlmd's
    # limits, not a retry loop
    with Stack(serve_args=["--arena", "1M"]) as Z:
        b64 = base64.b64encode(png(448, 448)).decode()   # 1024 patches x 4704 bytes
        st, r = Z.post("/v1/chat/completions", body(messages=image_msg("data:image/png;base64," + b64)))
        check(st == 400 and "does not fit" in r["error"]["message"], "big image: %d %r" % (st, r))
        st, r = Z.post("/v1/chat/completions", body())
        check(st == 200, "text after the big image: %d" % st)


def test_completions_batch():
    with Stack() as B:   # A's vlmd takes 2 requests at a time; this needs 4
        completions_batch(B)


def completions_batch(B):
    b = {"model": "model", "prompt": ["The sea", "A cat"], "n": 2, "max_tokens": 5,
         "temperature": 0, "ignore_eos": True}
    st, r = B.post("/v1/completions", b)
    check(st == 200 and [c["index"] for c in r["choices"]] == [0, 1, 2, 3], "batch %d %r" % (st, r))
    for i, p in enumerate(["The sea", "A cat"]):
        st, one = B.post("/v1/completions", dict(b, prompt=p, n=1))
        check(r["choices"][2 * i]["text"] == one["choices"][0]["text"] ==
              r["choices"][2 * i + 1]["text"], "prompt %d: %r vs %r" % (i, r["choices"], one))
    check(r["usage"]["completion_tokens"] == 20, "usage %r" % r["usage"])


def test_chat_template():
    tmpl = os.path.join(A.dir, "template.jinja")
    with open(tmpl, "w") as f:
        f.write("{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
                "{{ '<|im_start|>system\\nYou are a pirate.<|im_end|>\\n' }}{% endif %}"
                "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
                "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
    with Stack(serve_args=["--chat-template", tmpl]) as T:
        st, r = T.post("/v1/chat/completions", body())
        explicit = [{"role": "system", "content": "You are a pirate."}] + MSGS
        st2, r2 = T.post("/v1/chat/completions", body(messages=explicit))
        check(st == st2 == 200 and r["usage"]["prompt_tokens"] == r2["usage"]["prompt_tokens"] and
              r["choices"][0]["message"]["content"] == r2["choices"][0]["message"]["content"],
              "template default system: %r vs %r" % (r, r2))
        st3, r3 = A.post("/v1/chat/completions", body())
        check(r3["usage"]["prompt_tokens"] != r["usage"]["prompt_tokens"], "template not applied")
    with open(tmpl, "w") as f:
        f.write("{{ bos_token }}{% for m in messages %}[INST] {{ m['content'] }} [/INST]{% endfor %}")
    p = subprocess.run([env("VLM_SERVE"), "--model-dir", A.model, "--chat-template", tmpl,
                        "--port", "0"], capture_output=True, text=True, timeout=30, env=child_env())
    check(p.returncode != 0 and "ChatML" in p.stderr, "a non-ChatML template: %d %s" % (p.returncode, p.stderr))


if __name__ == "__main__":
    import tempfile
    media = tempfile.mkdtemp(prefix="vlm-media-")
    with Stack(serve_args=["--max-body", "1M", "--allowed-local-media-path", media,
                           "--allowed-media-domains", "127.0.0.1"],
               vlmd_args=["--max-running", "1", "--max-waiting", "1"]) as A:
        os.rmdir(media)
        os.mkdir(os.path.join(A.dir, "media"))
        A.stop_serve()
        A.serve_args = ["--max-body", "1M", "--allowed-local-media-path", os.path.join(A.dir, "media"),
                        "--allowed-media-domains", "127.0.0.1", "--max-images", "4"]
        A.start_serve()
        # A's vlmd admits 2 requests at a time: the tests that fill it come last
        run([test_signals_blocked_in_every_thread, test_sse_framing, test_validation, test_malformed, test_huge_body, test_slow_client,
             test_non_reading_client, test_vanishing_client, test_stalled_reader_dropped,
             test_stream_error, test_endpoints,
             test_media_policy, test_bad_images, test_no_tower, test_pixel_limits, test_media_max_bytes, test_image_larger_than_arena, test_completions_batch, test_chat_template,
             test_api_key_and_defaults, test_vlmd_busy_429, test_vlmd_restart])
