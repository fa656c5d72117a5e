"""The README's "Serve the OpenAI API" examples, run as written against a real vlm-serve + vlmd
(the only change: localhost:8000 becomes the test server's address). The model is served as
tiny-chat, as the README starts it."""

import json
import os
import re
import subprocess
import sys

from harness import SRCDIR, Stack, check, run

S = None


def section():
    with open(os.path.join(SRCDIR, "README.md")) as f:
        text = f.read()
    m = re.search(r"^## Serve the OpenAI API\n(.*?)^## ", text, re.S | re.M)
    check(m, "README.md has no 'Serve the OpenAI API' section")
    return m.group(1)


def block(lang):
    blocks = re.findall(r"^```%s\n(.*?)^```" % lang, section(), re.S | re.M)
    check(len(blocks) == 1, "want one %s block in the section, found %d" % (lang, len(blocks)))
    check("localhost:8000" in blocks[0], "the %s block does not use localhost:8000" % lang)
    return blocks[0].replace("http://localhost:8000", S.url)


def test_readme_curl():
    out = subprocess.run(["bash", "-euc", block("sh")], capture_output=True, text=True, timeout=60)
    check(out.returncode == 0, "curl block failed: %s" % out.stderr)
    r = json.loads(out.stdout)
    check(r["object"] == "chat.completion" and r["model"] == "tiny-chat" and
          r["usage"]["completion_tokens"] > 0, "curl answer %r" % r)


def test_readme_python():
    out = subprocess.run([sys.executable, "-c", block("python")], capture_output=True, text=True,
                         timeout=60)
    check(out.returncode == 0, "python block failed: %s" % out.stderr)
    m = re.search(r"usage: (\d+) \+ (\d+)\n?$", out.stdout)
    check(m and int(m.group(2)) > 0, "python block output %r" % out.stdout)


if __name__ == "__main__":
    with Stack(serve_args=["--served-model-name", "tiny-chat"]) as S:
        run([test_readme_curl, test_readme_python])
