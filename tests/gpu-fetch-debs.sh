#!/usr/bin/env bash
# tests/gpu-fetch-debs.sh — download, on a machine with a Debian 12 package registry, the .deb
# files tests/gpu-check.sh needs on the GPU machine (which has no registry) into .debs/
# (git-ignored; pass it with the run: carry [".debs"]). Dependencies are resolved recursively and
# packages of Priority "required" (present on every Debian 12, even a minimal one) are left out.
# The CUDA toolkit and a C compiler are expected on the GPU machine itself (nvcc needs gcc).
#   tests/gpu-fetch-debs.sh            download into .debs/
#   tests/gpu-fetch-debs.sh --list     print the package list only
set -euo pipefail
cd "$(dirname "$0")/.."

# What the build needs (tools/install-deps.sh minus what is optional for the cuda suite) plus
# the interpreters and tools meson itself needs on a bare system.
roots=(
	meson ninja-build pkgconf python3
	check libsubunit-dev
	liburing-dev libdlpack-dev libjansson-dev libpcre2-dev libutf8proc-dev
)
# libsystemd-dev and libmicrohttpd-dev are optional in meson.build (the latter pulls in perl and
# gnutls): left out, the GPU build simply goes without sd_notify and the metrics endpoint.

deps=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
	--no-replaces --no-enhances "${roots[@]}" 2>/dev/null | grep -v '^ ' | grep -v '^<' | sort -u)
# one apt-cache call: drop Essential / required / important packages and the C runtime that
# comes with the compiler (libc6, libstdc++6, libgcc-s1: the GPU machine has them)
want=$(apt-cache show --no-all-versions $deps 2>/dev/null | awk '
	/^Package:/ { p = $2; skip = 0 }
	/^Priority: (required|important)/ { skip = 1 }
	/^Essential: yes/ { skip = 1 }
	/^$/ { if (p != "" && !skip) print p; p = "" }
	END { if (p != "" && !skip) print p }' | sort -u |
	grep -v -x -E 'libc6|libstdc\+\+6|libgcc-s1|gcc-.*|cpp-.*|binutils.*|libc6-dev|libc-dev-bin|linux-libc-dev|libcrypt-dev|libnsl-dev|libtirpc-dev|rpcsvc-proto' || true)
want=($want)
if [ "${1:-}" = --list ]; then
	printf '%s\n' "${want[@]}"
	exit 0
fi
mkdir -p .debs
cd .debs
rm -f ./*.deb
apt-get download "${want[@]}" >/dev/null
n=$(ls -1 ./*.deb | wc -l)
echo "$n packages, $(du -sh . | cut -f1) in .debs/:"
ls -1 ./*.deb | sed 's#^\./#  #'
