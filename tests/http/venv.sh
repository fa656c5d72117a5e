#!/bin/sh
# The http suite's Python environment: BUILD/venv-http with the official `openai` package from
# the package index (CI has network access to it). Idempotent: an existing venv that imports
# openai is kept. Run by the suite as its first test; by hand: tests/http/venv.sh build
set -eu
venv=$1/venv-http
py=/usr/bin/python3
[ -x "$py" ] || py=python3
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import openai' 2>/dev/null; then
	echo "$venv: openai $("$venv/bin/python" -c 'import openai; print(openai.__version__)')"
	exit 0
fi
rm -rf "$venv"
"$py" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check openai
"$venv/bin/python" -c 'import openai; print("'"$venv"': openai", openai.__version__)'
