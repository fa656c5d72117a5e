"""`pip install ./python` works offline: a throwaway venv (--system-site-packages, so the
distribution's setuptools builds it), pip install --no-build-isolation --no-index of a copy of
python/ (pip would otherwise write build files into the source tree), then the installed package
(not the source tree) imports, finds libvlmclient through $VLM_LIBRARY, tokenizes, and says clearly
when the library cannot be found. No daemon, no NumPy.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import unittest

import harness


class InstallTest(unittest.TestCase):
    def test_pip_install(self):
        tmp = tempfile.mkdtemp(prefix="vlm-pyinst-")
        try:
            src = os.path.join(tmp, "src")
            shutil.copytree(harness.env("VLM_PYDIR"), src,
                            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
            venv = os.path.join(tmp, "venv")
            subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", venv],
                           check=True)
            py = os.path.join(venv, "bin", "python")
            r = subprocess.run([py, "-m", "pip", "install", "--no-build-isolation", "--no-index",
                                "--disable-pip-version-check", "-q", src],
                               capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

            envv = dict(os.environ, VLM_LIBRARY=harness.env("VLM_LIBRARY"))
            envv.pop("PYTHONPATH", None)
            tok = os.path.join(harness.TOK_DIR, "tokenizer.json")
            code = ("import vlmclient, sys; t = vlmclient.Tokenizer(sys.argv[1]); "
                    "print(vlmclient.__file__); print(vlmclient.library_version()); "
                    "print(t.decode(t.encode('hello world')))")
            r = subprocess.run([py, "-c", code, tok], env=envv, cwd=tmp, capture_output=True,
                               text=True)
            self.assertEqual(r.returncode, 0, r.stderr)
            where, version, text = r.stdout.splitlines()
            self.assertTrue(where.startswith(venv), where)   # the installed copy
            self.assertRegex(version, r"^\d+\.\d+\.\d+$")
            self.assertEqual(text, "hello world")

            # a folder works too: the library's own, or a build folder (client/ inside)
            lib = harness.env("VLM_LIBRARY")
            for folder in (os.path.dirname(lib), os.path.dirname(os.path.dirname(lib))):
                envv["VLM_LIBRARY"] = folder
                r = subprocess.run([py, "-c", "import vlmclient; print(vlmclient.library_path())"],
                                   env=envv, cwd=tmp, capture_output=True, text=True)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertTrue(os.path.samefile(r.stdout.strip(), lib), r.stdout)

            envv["VLM_LIBRARY"] = os.path.join(tmp, "no-such-lib.so")
            r = subprocess.run([py, "-c", "import vlmclient"], env=envv, cwd=tmp,
                               capture_output=True, text=True)
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("LibraryNotFound", r.stderr)
            self.assertIn("VLM_LIBRARY", r.stderr)

            r = subprocess.run([py, "-m", "pip", "uninstall", "-y", "-q", "vlmclient"],
                               capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stderr)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    unittest.main(verbosity=1)
