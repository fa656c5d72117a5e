#!/bin/sh
# The README's C and Python examples are the ones the test suite runs: the C block must equal
# examples/generate.c (from its first #include on; built and run by client-example), the Python
# block must equal the first python block of docs/PYTHON.md (run as written by py-client).
set -eu
src=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
block() { # FILE LANG N: the N-th fenced block of LANG in FILE
	awk -v lang="$2" -v want="$3" '
		$0 == "```" lang { n++; inb = (n == want); next }
		/^```/ { inb = 0; next }
		inb { print }' "$1"
}
block "$src/README.md" c 1 > "$tmp/readme.c"
sed -n '/^#include <stdio.h>/,$p' "$src/examples/generate.c" > "$tmp/example.c"
[ -s "$tmp/readme.c" ] || { echo "README.md has no C block"; exit 1; }
diff -u "$tmp/example.c" "$tmp/readme.c" || { echo "README's C example differs from examples/generate.c"; exit 1; }
block "$src/README.md" python 1 > "$tmp/readme.py"
block "$src/docs/PYTHON.md" python 1 > "$tmp/doc.py"
[ -s "$tmp/readme.py" ] || { echo "README.md has no Python block"; exit 1; }
diff -u "$tmp/doc.py" "$tmp/readme.py" || { echo "README's Python example differs from docs/PYTHON.md's (the one py-client runs)"; exit 1; }
echo "README examples are the tested ones"
