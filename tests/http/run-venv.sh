#!/bin/sh
# Runs a test script with the http suite's venv (BUILD/venv-http, made by venv.sh, the suite's
# first test). A missing venv is a failure, not a skip: CI creates it.
set -eu
py=$1/venv-http/bin/python
shift
[ -x "$py" ] || { echo "no $py: run tests/http/venv.sh $(dirname "$(dirname "$(dirname "$py")")") first (test http-venv)"; exit 1; }
exec "$py" "$@"
