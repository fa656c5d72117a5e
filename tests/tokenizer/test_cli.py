#!/usr/bin/env python3
"""vlm-tokenize end to end against the committed Hugging Face fixtures (standard library only).

usage: test_cli.py VLM_TOKENIZE DATA_DIR
"""
import json
import os
import subprocess
import sys
import tempfile


def run(args, stdin=None):
    p = subprocess.run(args, input=stdin, capture_output=True)
    if p.returncode != 0:
        raise SystemExit(f"{args}: exit {p.returncode}: {p.stderr.decode(errors='replace')}")
    return p.stdout


def main():
    exe, data = sys.argv[1], sys.argv[2]
    tok = os.path.join(data, "tokenizer.json")
    cases = json.load(open(os.path.join(data, "cases.json"), encoding="utf-8"))
    enc = cases["tokenizer.json"]["encode"]
    n = 0
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "t.txt")
        for c in enc[::7]:
            with open(path, "wb") as f:
                f.write(c["text"].encode("utf-8"))
            for flag, key in (([], "ids"), (["--special-as-text"], "ids_special_as_text")):
                got = json.loads(run([exe, "-t", tok, "encode", "--json", *flag, "-f", path]))
                assert got == c[key], (c["text"], key, got, c[key])
            if c["ids"]:
                ids = ",".join(map(str, c["ids"]))
                out = run([exe, "-t", tok, "decode", ids])
                assert out == c["decoded"].encode("utf-8") + b"\n", (c["text"], out)
                out = run([exe, "-t", tok, "decode", "--stream", "--skip-special"],
                          stdin=ids.encode())
                assert out == c["decoded_skip_special"].encode("utf-8") + b"\n", (c["text"], out)
            n += 1
        chats = json.load(open(os.path.join(data, "chat.json"), encoding="utf-8"))
        for conv in chats["conversations"]:
            cpath = os.path.join(tmp, "c.json")
            with open(cpath, "w", encoding="utf-8") as f:
                json.dump(conv["messages"], f)
            args = [exe, "-t", tok, "chat", "--json", cpath]
            if not conv["add_generation_prompt"]:
                args.append("--no-generation-prompt")
            if conv.get("add_vision_id"):
                args.append("--vision-id")
            got = json.loads(run(args))
            assert got["ids"] == conv["ids"], conv["messages"]
            n += 1
    # Errors: bad tokenizer file and bad ids give exit status != 0 and a message.
    p = subprocess.run([exe, "-t", os.path.join(data, "chat.json"), "encode", "x"],
                       capture_output=True)
    assert p.returncode == 1 and b"tokenizer.json" in p.stderr, p
    p = subprocess.run([exe, "-t", tok, "decode", "12,abc"], capture_output=True)
    assert p.returncode == 2 and p.stderr, p
    print(f"{n} vlm-tokenize cases match Hugging Face")


if __name__ == "__main__":
    main()
