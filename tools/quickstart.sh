#!/usr/bin/env bash
# The README's first command: install the build dependencies (Debian 12, apt-get), build vlmd,
# start the daemon as its own process on a private socket, and serve real requests through it
# from a separate client process. Today vlmd's request path serves ECHO requests (the serving
# engine that generates tokens is the next milestone); the model runtime is shown running the
# Qwen2 forward on the CPU backend on a checkpoint made by vlm-mkmodel.
set -euo pipefail
cd "$(dirname "$0")/.."

tools/install-deps.sh
[ -d /usr/local/cuda/bin ] && export PATH=/usr/local/cuda/bin:$PATH
[ -f build/build.ninja ] || meson setup build
ninja -C build

run_dir=$(mktemp -d /tmp/vlmd-quickstart-XXXXXX)
sock=$run_dir/vlmd.sock
cleanup() {
	[ -n "${vlmd_pid:-}" ] && kill "$vlmd_pid" 2>/dev/null && wait "$vlmd_pid" 2>/dev/null
	rm -rf "$run_dir"
}
trap cleanup EXIT

echo "== starting vlmd on $sock"
build/daemon/vlmd --socket "$sock" &
vlmd_pid=$!
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done
[ -S "$sock" ] || { echo "vlmd did not start" >&2; exit 1; }

echo "== a client process sends 20000 ECHO requests through the shared-memory rings"
build/tools/vlm-bench transport --socket "$sock" --iters 20000

if [ -x build/tools/vlm-mkmodel ] && build/tools/vlm-bench --help | grep -q decode; then
	echo "== model runtime: a tiny Qwen2-VL checkpoint (vlm-mkmodel), decode on the CPU backend"
	build/tools/vlm-mkmodel --preset tiny "$run_dir/tiny" >/dev/null
	build/tools/vlm-bench decode --model "$run_dir/tiny" --batch 1,8
fi
echo "== done; vlmd stops now (SIGTERM)"
