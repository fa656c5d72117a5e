#!/bin/sh
# tests/transport/model-doorbell.sh — model-check the doorbell protocol (doorbell.pml) with SPIN:
# no lost wake-up with the fences, and a lost wake-up found without them. Skips (77) when spin or
# a C compiler is missing.
set -u
command -v spin >/dev/null 2>&1 || { echo "spin not installed: skip"; exit 77; }
command -v cc >/dev/null 2>&1 || { echo "no C compiler: skip"; exit 77; }
model=$(cd "$(dirname "$0")" && pwd)/doorbell.pml
work=$(mktemp -d) || exit 1
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1

check() { # $1: extra spin define, prints the number of errors
	rm -f pan* ./*.trail
	spin $1 -a "$model" >spin.log 2>&1 || { cat spin.log; echo "spin failed"; exit 1; }
	cc -O1 -w -DSAFETY -o pan pan.c >cc.log 2>&1 || { cat cc.log; echo "cc failed"; exit 1; }
	./pan -m100000 >pan.log 2>&1
	sed -n 's/.*errors: \([0-9]*\).*/\1/p' pan.log | head -n 1
}

e=$(check "")
echo "with fences: errors ${e:-?}"
[ "${e:-x}" = 0 ] || { cat pan.log; echo "FAIL: lost wake-up with the fences"; exit 1; }
e=$(check "-DNOFENCE")
echo "without fences: errors ${e:-?}"
[ "${e:-0}" != 0 ] || { cat pan.log; echo "FAIL: the model cannot see the bug the fences prevent"; exit 1; }
echo "OK: no lost wake-up; the fences are necessary"
