#!/usr/bin/env python3
"""tests/ops/test-chat.py VLMD VLM_CHAT VLM_MKMODEL TOKENIZER_JSON — vlm-chat driven through a
pseudo-terminal against a real vlmd on a tiny checkpoint fitted to a real tokenizer.

What a user does, and what the test asserts:
  - a message: the reply streams, then a status line with tokens, tokens/s, first-token time,
    prompt and cached prompt tokens;
  - a second message: the whole conversation is sent again, so the prompt grows, and vlmd's
    prefix cache serves the first turn (cached > 0): the history is kept;
  - /reset: the next prompt is as short as a first turn again;
  - /system TEXT: the system prompt changes the prompt (more tokens than the default one);
  - Ctrl-C while a long reply streams: "[cancelled after N tokens" with N below max-tokens, the
    program is still there (a prompt comes back and the next message is answered);
  - Ctrl-C at the prompt: a hint, the program stays; unknown /command: a hint;
  - /quit ends with exit status 0; Ctrl-D does too (second session).
No timing assertion: every wait is for a text to appear (bounded generously for a loaded machine);
the Ctrl-C is sent after the reply's first bytes arrive, and the reply is 3000 tokens long.
"""
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

VLMD, CHAT, MKMODEL, TOKJSON, IMAGE = sys.argv[1:6]
WAIT = 120.0   # seconds for any expected text: a bound for a hung program, not a timing check

STATUS = re.compile(rb"\[(\d+) tokens, ([\d.]+) tokens/s, first token (\d+) ms, prompt (\d+) \((\d+) cached\)"
                    rb"(?:, images (\d+) \((\d+) reused\))?, (\w+), [\d.]+ s\]")


class Pty:
    def __init__(self, argv, env):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            try:
                os.execve(argv[0], argv, env)
            finally:
                os._exit(127)
        self.buf = b""

    def send(self, data):
        os.write(self.fd, data)

    def expect(self, pattern, what):
        """Read until pattern (bytes regex) matches the text after the last match; return it."""
        rx = re.compile(pattern)
        end = time.monotonic() + WAIT
        while True:
            m = rx.search(self.buf)
            if m:
                self.buf = self.buf[m.end():]
                return m
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError("no %s within %.0f s; output so far: %r" % (what, WAIT, self.buf[-2000:]))
            r, _, _ = select.select([self.fd], [], [], min(left, 1.0))
            if r:
                try:
                    data = os.read(self.fd, 65536)
                except OSError:
                    data = b""
                if not data:
                    m = rx.search(self.buf)
                    if m:
                        self.buf = self.buf[m.end():]
                        return m
                    raise AssertionError("vlm-chat ended before %s; output: %r" % (what, self.buf[-2000:]))
                self.buf += data

    def wait_exit(self):
        end = time.monotonic() + WAIT
        while time.monotonic() < end:
            pid, st = os.waitpid(self.pid, os.WNOHANG)
            if pid == self.pid:
                return os.waitstatus_to_exitcode(st)
            try:
                r, _, _ = select.select([self.fd], [], [], 0.2)
                if r:
                    os.read(self.fd, 65536)
            except OSError:
                pass
        os.kill(self.pid, signal.SIGKILL)
        raise AssertionError("vlm-chat did not exit")


def status(p, what):
    m = p.expect(STATUS, what)
    return {"tokens": int(m.group(1)), "tps": float(m.group(2)), "prompt": int(m.group(4)),
            "cached": int(m.group(5)), "reason": m.group(8).decode(),
            "images": int(m.group(6) or 0), "reused": int(m.group(7) or 0)}


def main():
    tmp = tempfile.mkdtemp(prefix="vlm-chat-test-")
    model, sock = tmp + "/model", tmp + "/vlmd.sock"
    daemon = None
    try:
        # hidden 256 x 4 layers: a 3000-token reply takes seconds, long enough to interrupt
        subprocess.run([MKMODEL, "--preset", "tiny", "--hidden", "256", "--layers", "4", "--heads", "4",
                        "--kv-heads", "2", "--intermediate", "768", "--mrope-section", "8,12,12",
                        "--tokenizer", TOKJSON, model], check=True, stdout=subprocess.DEVNULL)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VLM_", "VLMD_"))}
        env["VLMD_CONFIG"] = ""
        log = open(tmp + "/vlmd.log", "w")
        daemon = subprocess.Popen([VLMD, "--model", model, "--socket", sock, "--threads", "1",
                                   "--kv-memory", "64M", "--stats-interval", "1"], env=env, stderr=log)
        end = time.monotonic() + WAIT
        while not os.path.exists(sock):
            assert daemon.poll() is None, "vlmd exited: " + open(tmp + "/vlmd.log").read()
            assert time.monotonic() < end, "vlmd did not start"
            time.sleep(0.05)

        cenv = dict(env, VLM_SOCKET=sock, TERM="dumb")
        p = Pty([CHAT, "--model-dir", model, "--max-tokens", "8", "--ignore-eos"], cenv)
        p.expect(rb"/quit or Ctrl-D to leave", "the greeting")
        p.expect(rb">>> ", "the first prompt")

        p.send(b"Hello, who are you?\r")
        s1 = status(p, "the first status line")
        assert s1["tokens"] == 8 and s1["reason"] == "length" and s1["tps"] > 0, s1
        assert s1["cached"] == 0, s1
        p.expect(rb">>> ", "the prompt after turn 1")

        p.send(b"Tell me more.\r")
        s2 = status(p, "the second status line")
        assert s2["prompt"] > s1["prompt"] + 8, ("turn 2 does not carry turn 1", s1, s2)
        assert s2["cached"] > 0, ("turn 2 did not reuse turn 1's prefix", s2)
        p.expect(rb">>> ", "the prompt after turn 2")

        p.send(b"/reset\r")
        p.expect(rb"\[conversation reset\]", "the reset note")
        p.expect(rb">>> ", "the prompt after /reset")
        p.send(b"Hello, who are you?\r")
        s3 = status(p, "the status line after /reset")
        assert s3["prompt"] == s1["prompt"], ("/reset kept history", s1, s3)

        p.send(b"/system You are a pirate who answers in rhymes.\r")
        p.expect(rb"\[system prompt set; conversation reset\]", "the /system note")
        p.expect(rb">>> ", "the prompt after /system")
        p.send(b"Hello, who are you?\r")
        s4 = status(p, "the status line with a system prompt")
        assert s4["prompt"] > s1["prompt"], ("/system did not change the prompt", s1, s4)

        p.send(b"/bogus\r")
        p.expect(rb"unknown command /bogus", "the unknown-command hint")
        p.expect(rb">>> ", "the prompt after /bogus")

        # Ctrl-C at the prompt: a hint, not an exit
        p.send(b"\x03")
        p.expect(rb"Ctrl-C stops a reply; /quit or Ctrl-D leaves", "the Ctrl-C hint")
        p.expect(rb">>> ", "the prompt after Ctrl-C")

        # Ctrl-C during a long reply cancels that turn only (after /reset, which keeps the
        # system prompt: the turn after the cancel must look exactly like turn 4)
        p.send(b"/reset\r")
        p.expect(rb"\[conversation reset\]", "the reset note")
        p.send(b"/set max-tokens 3000\r")
        p.expect(rb"\[max-tokens 3000", "the /set note")
        p.expect(rb">>> ", "the prompt after /set")
        p.send(b"Write a long story.\r")
        p.expect(rb"story\.\r?\n.", "the first bytes of the long reply")
        p.send(b"\x03")
        m = p.expect(rb"\[cancelled after (\d+) tokens; this turn is not kept\]", "the cancel note")
        assert int(m.group(1)) < 3000, m.group(0)
        p.expect(rb">>> ", "the prompt after the cancelled turn")
        p.send(b"/set max-tokens 8\r")
        p.expect(rb">>> ", "the prompt after /set")
        p.send(b"Hello, who are you?\r")
        s5 = status(p, "the status line after the cancel")
        assert s5["prompt"] == s4["prompt"], ("the cancelled turn stayed in the history", s4, s5)
        p.expect(rb">>> ", "the prompt after turn 5")

        # images by path: a missing file is said at once; a real one is preprocessed here
        # (its patch grid and token count shown) and goes with the next message, which vlmd's
        # vision tower encodes and the model answers (the tiny preset has a tower).
        p.send(b"/set max-tokens 8\r")
        p.expect(rb">>> ", "the prompt after /set")
        p.send(b"/image " + tmp.encode() + b"/missing.jpg\r")
        p.expect(rb"/image [^\r\n]*missing.jpg: [^\r\n]*No such file", "the missing-image message")
        p.expect(rb">>> ", "the prompt after a missing image")
        p.send(b"/image " + IMAGE.encode() + b"\r")
        p.expect(rb"\[image [^\r\n]*: 32x32 patches, 256 tokens; sent with your next message\]", "the image note")
        p.expect(rb">>> ", "the prompt after /image")
        p.send(b"What is in this picture?\r")
        m = p.expect(STATUS.pattern, "the answer to the image turn")
        assert int(m.group(4)) > 256, "the image turn's prompt holds its 256 pad tokens: %r" % m.group(0)
        # /image read only its header (grid and token count); the turn preprocessed it into the
        # connection's arena, once
        assert m.group(6) == b"1" and m.group(7) == b"0", "the image turn's images: %r" % m.group(0)
        p.expect(rb">>> ", "the prompt after the image turn")
        # the next turn resends the conversation's image: found in the arena again, not redone
        p.send(b"And the colours?\r")
        s6 = status(p, "the turn after the image turn")
        assert s6["images"] == 1 and s6["reused"] == 1, ("the image was preprocessed again", s6)
        p.expect(rb">>> ", "the prompt after the turn after the image turn")

        # a refused request: vlmd's reason, and the chat goes on
        p.send(b"/set max-tokens 5000\r")
        p.expect(rb">>> ", "the prompt after /set")
        p.send(b"Hello, who are you?\r")
        p.expect(rb"vlm-chat: vlmd: [^\r\n]*max-model-len", "vlmd's refusal")
        p.expect(rb">>> ", "the prompt after the refusal")

        chat_pid = p.pid
        p.send(b"/quit\r")
        rc = p.wait_exit()
        assert rc == 0, "exit status %d after /quit" % rc

        # Ctrl-D at the prompt ends too
        p = Pty([CHAT, "--model-dir", model, "--max-tokens", "4"], cenv)
        p.expect(rb">>> ", "the first prompt (session 2)")
        p.send(b"\x04")
        rc = p.wait_exit()
        assert rc == 0, "exit status %d after Ctrl-D" % rc

        # --stop: the reply ends right before the stop string, even across tokens, and the
        # turn counts as a stop (stdin a pipe: no prompts, the reply on stdout)
        def piped(*extra):
            r = subprocess.run([CHAT, "--model-dir", model, "--max-tokens", "24", "--ignore-eos", *extra],
                               env=cenv, input="Hello, who are you?\n", capture_output=True, text=True,
                               timeout=WAIT)
            assert r.returncode == 0, (r.returncode, r.stderr)
            return r
        full = piped().stdout.rstrip("\n")
        assert len(full) >= 8, repr(full)
        cut = len(full) // 2
        stop = full[cut:cut + 3]
        first = full.find(stop)     # the reply ends before the first occurrence
        r = piped("--stop", stop)
        assert r.stdout.rstrip("\n") == full[:first], (full, stop, r.stdout)
        assert re.search(r", stop, [\d.]+ s\]", r.stderr), r.stderr

        # no vlmd: a message that says what to do, exit 1
        r = subprocess.run([CHAT, "--model-dir", model, "--socket", tmp + "/none.sock"], env=env,
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=WAIT)
        assert r.returncode == 1 and "cannot connect to vlmd at " + tmp + "/none.sock" in r.stderr \
            and "start vlmd" in r.stderr, (r.returncode, r.stderr)
        assert daemon.poll() is None, "vlmd died"

        # vlmd's log: load progress and KV size at info, one line per request (with the
        # client's pid), one per refusal with its reason, a stats line once work was done
        end = time.monotonic() + WAIT
        while "event=stats " not in open(tmp + "/vlmd.log").read():
            assert time.monotonic() < end, "no stats line: " + open(tmp + "/vlmd.log").read()[-3000:]
            time.sleep(0.1)
        text = open(tmp + "/vlmd.log").read()
        assert re.search(r"level=info event=load_progress tensor=(\d+) tensors=\1 done_bytes=(\d+) total_bytes=\2 percent=100 elapsed_s=", text), text
        assert re.search(r"level=info event=kv_cache tokens=\d+ blocks=\d+ block_size=16 bytes=67108864 sized_by=kv-memory", text), text
        done = re.findall(r"level=info event=request_done client=\d+ pid=(\d+) uid=\d+ name=vlm-chat request=\d+ "
                          r"reason=(\w+) prompt=(\d+) cached=(\d+) generated=(\d+) queue_ms=[\d.]+ ttft_ms=[\d.]+ "
                          r"total_ms=[\d.]+ tokens_per_s=[\d.]+", text)
        want = ["length"] * 4 + ["cancelled", "length", "length", "length"]
        assert len(done) > len(want) and all(int(d[0]) != chat_pid for d in done[len(want):]), done
        done = done[:len(want)]    # the pty session's; the --stop sessions came later
        assert [d[1] for d in done] == want, done
        assert all(int(d[0]) == chat_pid for d in done), (chat_pid, done)
        assert [int(d[2]) for d in done[:4]] == [s1["prompt"], s2["prompt"], s3["prompt"], s4["prompt"]], done
        assert int(done[1][3]) == s2["cached"], done
        ref = re.findall(r"level=info event=request_refused client=\d+ pid=(\d+) uid=\d+ name=vlm-chat request=\d+ "
                         r"error=E[A-Z0-9]+ reason=\"([^\"]*)\"", text)
        assert len(ref) == 1 and int(ref[-1][0]) == chat_pid and "max-model-len" in ref[-1][1], ref
        assert re.search(r"level=info event=stats running=\d+ waiting=\d+ kv_use_pct=[\d.]+ "
                         r"generation_tokens_per_s=[\d.]+ prompt_tokens_per_s=[\d.]+ finished=[1-9]", text), text
        print("ok chat: %d-token turns at %.0f tokens/s, turn 2 prompt %d (%d cached); image turn answered, its image found in the arena on the next turn" %
              (s1["tokens"], s1["tps"], s2["prompt"], s2["cached"]))
        return 0
    finally:
        if daemon and daemon.poll() is None:
            daemon.terminate()
            daemon.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
