#!/usr/bin/env bash
# The README's first command: install the build dependencies (Debian 12, apt-get), build vlmd,
# make a small Qwen2-VL-shaped checkpoint fitted to a real Qwen2 tokenizer (random weights: the
# text it writes is gibberish, but every step is the real one), start vlmd on it as its own
# process, and serve real requests from separate client processes:
#   0. vlm-generate --image: a real JPEG from tests/vision is decoded and preprocessed in the client
#      (libvlmclient), vlmd's vision tower encodes the patches, the chat turn streams back; the
#      same turn again hits the vision cache and the prefix cache;
#   1. vlm-generate: a chat turn with an image (text -> chat template -> token ids + an image
#      embedding from a .npy file -> vlmd -> streamed text), then the same turn again, which the
#      prefix cache serves (cached tokens in the finish line);
#   2. the Python binding (numpy embedding through DLPack) streaming tokens;
#   3. vlmctl: the daemon's state and metrics.
set -euo pipefail
cd "$(dirname "$0")/.."

tools/install-deps.sh
[ -d /usr/local/cuda/bin ] && export PATH=/usr/local/cuda/bin:$PATH
[ -f build/build.ninja ] || meson setup build
ninja -C build

# Debian's python3 (where tools/install-deps.sh put numpy), even when another python3 is first on PATH
py=/usr/bin/python3
[ -x "$py" ] || py=python3

run_dir=$(mktemp -d /tmp/vlmd-quickstart-XXXXXX)
sock=$run_dir/vlmd.sock
model=$run_dir/model
cleanup() {
	[ -n "${vlmd_pid:-}" ] && kill "$vlmd_pid" 2>/dev/null && wait "$vlmd_pid" 2>/dev/null
	rm -rf "$run_dir"
}
trap cleanup EXIT

echo "== a Qwen2-VL-shaped checkpoint with a vision tower (random weights) fitted to a Qwen2 tokenizer.json"
build/tools/vlm-mkmodel --preset tiny --tokenizer tests/tokenizer/data/tokenizer.json "$model"
ls -l "$model"

echo "== starting vlmd on $sock"
build/daemon/vlmd --socket "$sock" --model "$model" --kv-memory 64M &
vlmd_pid=$!
# up to 2 minutes (a loaded machine), as long as vlmd runs
for _ in $(seq 2400); do [ -S "$sock" ] && break; kill -0 "$vlmd_pid" 2>/dev/null || break; sleep 0.05; done
[ -S "$sock" ] || { echo "vlmd did not start" >&2; exit 1; }

echo "== vlm-generate --image: a real image in (client preprocessing, vlmd's vision tower)"
for turn in first again; do
	build/tools/vlm-generate --socket "$sock" --model-dir "$model" \
		--image tests/vision/images/jpeg_448x448.jpg --prompt "What is in this picture?" \
		--max-tokens 24 --seed 1 --temperature 0.8
	echo
	if [ "$turn" = first ]; then
		echo "   (first request: the tower encoded the image)"
	else
		echo "   (again: the vision cache and the prefix cache serve the image)"
	fi
done

# one image of grid 1 x 2 x 2 after the merge = 4 embedding rows of the model's hidden size (128),
# as a vision encoder would produce them
"$py" - "$run_dir/image.npy" <<'PY'
import sys, numpy as np
rng = np.random.default_rng(7)
np.save(sys.argv[1], (rng.standard_normal((4, 128)) * 0.5).astype(np.float32))
PY
cat > "$run_dir/chat.json" <<'JSON'
[{"role": "user", "content": [
  {"type": "image", "grid_thw": [1, 4, 4]},
  {"type": "text", "text": "Describe this image in one sentence."}]}]
JSON

echo "== vlm-generate: chat turn with an image (text streams as it is generated)"
for turn in first again; do
	build/tools/vlm-generate --socket "$sock" --model-dir "$model" --chat "$run_dir/chat.json" \
		--embed "$run_dir/image.npy" --max-tokens 24 --seed 1 --temperature 0.8
	echo
	echo "   ($turn request)"
done

echo "== Python: the vlmclient package over libvlmclient (numpy embedding via DLPack)"
VLM_LIBRARY=build/client PYTHONPATH=python "$py" - "$sock" "$model" <<'PY'
import sys, numpy as np
from vlmclient import Client, GenerationConfig, MultiMediaInfo, Tokenizer
sock, model = sys.argv[1], sys.argv[2]
tok = Tokenizer(model + "/tokenizer.json")
ids = tok.encode("<|vision_start|>" + "<|image_pad|>" * 4 + "<|vision_end|>What is this?")
mm = MultiMediaInfo()
mm.add_multimedia_content(tok.token_to_id("<|image_pad|>"), [np.ones((4, 128), np.float32) * 0.1], grids=[(1, 2, 2)])
with Client(socket=sock) as c:
    stream = c.generate(ids, mm_info=mm, config=GenerationConfig(max_tokens=12))
    print("tokens:", [t for t in stream])
    print("finish:", stream.finish.reason, "usage:", stream.finish.usage)
PY

echo "== vlmctl: what the daemon is doing"
build/tools/vlmctl --socket "$sock" info
build/tools/vlmctl --socket "$sock" metrics | grep -E '^vlmd_(requests_finished|generation_tokens|prompt_tokens|images_encoded|vision_cache_(hits|misses))'
echo "== done; vlmd stops now (SIGTERM)"
