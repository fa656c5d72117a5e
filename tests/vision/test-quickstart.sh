#!/usr/bin/env bash
# The README's first command (tools/quickstart.sh) shows a real image going in: run it as written
# (from the source root, on the build/ tree the test suite just built) and check from its output
# that vlm-generate --image sent the committed JPEG through the client's preprocessing and vlmd's
# vision tower: the first turn's prompt holds the image's 256 pads (448x448 -> 32x32 patches ->
# 16x16 after the merge) with nothing cached, the second turn finds them cached, and vlmd's
# metrics count one image encoded and one vision-cache hit. A stub apt-get first in PATH turns
# "packages missing" into a failure instead of an install.
#   usage: test-quickstart.sh SOURCE_ROOT
set -uo pipefail
src=$1
cd "$src" || exit 1
grep -q '^tools/quickstart.sh' README.md || { echo "FAIL: README's first command is not tools/quickstart.sh"; exit 1; }
img=$(grep -o 'tests/vision/images/[a-z0-9_]*\.jpg' tools/quickstart.sh | head -1)
[ "$img" = tests/vision/images/jpeg_448x448.jpg ] && [ -f "$img" ] || {
	echo "FAIL: quickstart.sh's image is '$img' (want the committed 448x448 JPEG)"; exit 1; }
grep -q "$img" README.md || { echo "FAIL: README does not name $img"; exit 1; }

stub=$(mktemp -d)
trap 'rm -rf "$stub"' EXIT
printf '#!/bin/sh\necho "apt-get $*: a package install-deps.sh lists is missing" >&2\nexit 1\n' >"$stub/apt-get"
chmod +x "$stub/apt-get"
out=$(PATH="$stub:$PATH" timeout 240 tools/quickstart.sh 2>&1)
rc=$?
fail=0
check() { if ! eval "$1"; then echo "FAIL: $2"; fail=1; fi; }
check '[ $rc -eq 0 ]' "tools/quickstart.sh exited $rc"
# the two --image turns are the first two finish lines
mapfile -t fin < <(grep -E '^finish: ' <<<"$out" | head -2)
re='^finish: length, prompt ([0-9]+) tokens \(([0-9]+) cached\)'
if [[ ${fin[0]:-} =~ $re ]]; then p0=${BASH_REMATCH[1]}; c0=${BASH_REMATCH[2]}; else p0=0; c0=-1; fi
if [[ ${fin[1]:-} =~ $re ]]; then p1=${BASH_REMATCH[1]}; c1=${BASH_REMATCH[2]}; else p1=0; c1=-1; fi
check '[ "$p0" -gt 256 ] && [ "$c0" -eq 0 ]' "first --image turn: '${fin[0]:-}' (want > 256 prompt tokens, 0 cached)"
check '[ "$p1" -eq "$p0" ] && [ "$c1" -gt 256 ]' "second --image turn: '${fin[1]:-}' (want the image's pads cached)"
for m in 'vlmd_images_encoded_total 1' 'vlmd_vision_cache_hits_total 1' 'vlmd_vision_cache_misses_total 1'; do
	check 'grep -qx "$m" <<<"$out"' "metrics lack '$m'"
done
if [ $fail -ne 0 ]; then
	echo "---- quickstart output (last 60 lines)"
	tail -60 <<<"$out"
	exit 1
fi
echo "ok README's first command: $img in, prompt $p0 tokens, then $c1 cached; 1 image encoded, 1 vision-cache hit"
