#!/bin/sh
# tests/ops/test-cli.sh VLMD — vlmd's command line: --help/--version, --check-config exit codes
# and messages that name file and line, precedence defaults < file < environment < flags as
# --check-config prints it, and a daemon that refuses to start on a bad file.
set -u
vlmd=$1 mkmodel=$2
dir=$(mktemp -d /tmp/vlmd-cli-XXXXXX)
trap 'rm -rf "$dir"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
# no VLMD_* from the caller's environment, and not this machine's /etc/vlmd/vlmd.conf
for v in $(env | sed -n 's/^\(VLMD_[A-Z_]*\)=.*/\1/p'); do unset "$v"; done
export VLMD_CONFIG=

"$vlmd" --help >"$dir/out" 2>&1 || fail "--help exit $?"
for s in socket event-loop spin-us max-clients allow-uid allow-gid arena-max client-timeout \
         tick-ms echo-thread log-level config check-config; do
  grep -q -- "--$s" "$dir/out" || fail "--help does not list --$s"
done
"$vlmd" --version | grep -q '^vlmd [0-9].* [+-]CUDA [+-]io_uring [+-]HTTP +systemd$' \
  || fail "--version: $("$vlmd" --version)"
grep -q "ECHO" "$dir/out" && fail "--help still says it serves ECHO requests"
grep -q "serves a vision-language model" "$dir/out" || fail "--help does not say what vlmd does"
grep -q -- "--memory-fraction F" "$dir/out" || fail "--help does not list --memory-fraction"

# a good file: exit 0, the values it set, their source
cat >"$dir/good.conf" <<'CONF'
# comment
echo yes
spin-us 10
tick-ms 11   # inline comment
allow-gid 0
CONF
"$vlmd" --check-config --config "$dir/good.conf" >"$dir/out" 2>"$dir/err"
[ $? -eq 0 ] || fail "good config: exit $? ($(cat "$dir/err"))"
grep -q '^spin-us 10  # file$' "$dir/out" || fail "good config: spin-us not from the file: $(cat "$dir/out")"
grep -q '^tick-ms 11  # file$' "$dir/out" || fail "good config: tick-ms"
grep -q '^allow-gid 0  # file$' "$dir/out" || fail "good config: allow-gid"
grep -q '^max-clients 64  # default$' "$dir/out" || fail "good config: default max-clients"
grep -q 'configuration OK' "$dir/err" || fail "good config: no OK"

# precedence: environment over file, flags over environment
VLMD_SPIN_US=20 VLMD_TICK_MS=21 "$vlmd" --check-config --config "$dir/good.conf" --tick-ms 31 >"$dir/out" 2>&1 \
  || fail "precedence: exit $?"
grep -q '^spin-us 20  # environment$' "$dir/out" || fail "precedence: env over file: $(cat "$dir/out")"
grep -q '^tick-ms 31  # command line$' "$dir/out" || fail "precedence: flag over env"
VLMD_CONFIG="$dir/good.conf" "$vlmd" --check-config >"$dir/out" 2>&1 || fail "VLMD_CONFIG: exit $?"
grep -q '^spin-us 10  # file$' "$dir/out" || fail "VLMD_CONFIG not read"

# bad files: exit 1 and the error names file and line
check_bad() { # LINE NEEDLE CONTENT
  printf '%b' "$3" >"$dir/bad.conf"
  "$vlmd" --check-config --config "$dir/bad.conf" >/dev/null 2>"$dir/err"
  rc=$?
  [ $rc -eq 1 ] || fail "bad config '$3': exit $rc, want 1"
  grep -q "^vlmd: $dir/bad.conf:$1: .*$2" "$dir/err" || fail "bad config '$3': error '$(cat "$dir/err")' lacks line $1 / '$2'"
}
check_bad 2 "unknown setting 'spin_us'" "socket /tmp/x\nspin_us 5\n"
check_bad 3 "max-clients: invalid value 'many'" "\n# c\nmax-clients many\n"
check_bad 1 "tick-ms: invalid value '0'" "tick-ms 0\n"
check_bad 1 "missing value" "log-level\n"
"$vlmd" --check-config --config "$dir/nonexistent.conf" >/dev/null 2>"$dir/err"
[ $? -eq 1 ] || fail "missing config file: exit not 1"
grep -q "nonexistent.conf" "$dir/err" || fail "missing config file: error does not name it"
VLMD_MAX_CLIENTS=x "$vlmd" --check-config >/dev/null 2>"$dir/err"
[ $? -eq 1 ] || fail "bad environment: exit not 1"
grep -q "VLMD_MAX_CLIENTS" "$dir/err" || fail "bad environment: error does not name the variable"

# the daemon itself refuses a bad file (usage error, exit 2) before it binds anything
printf 'spin-us 1\nbogus 1\n' >"$dir/bad.conf"
"$vlmd" --config "$dir/bad.conf" --socket "$dir/s.sock" >/dev/null 2>"$dir/err"
[ $? -eq 2 ] || fail "daemon with a bad file: exit not 2"
grep -q "bad.conf:2: unknown setting 'bogus'" "$dir/err" || fail "daemon with a bad file: $(cat "$dir/err")"
[ ! -e "$dir/s.sock" ] || fail "daemon with a bad file bound its socket"
"$vlmd" --max-clients zero >/dev/null 2>"$dir/err"
[ $? -eq 2 ] || fail "bad flag: exit not 2"
grep -q -- "--max-clients: invalid value 'zero'" "$dir/err" || fail "bad flag: $(cat "$dir/err")"

# --- the model: required, and --check-config looks inside the folder ---
printf 'spin-us 10\n' >"$dir/nomodel.conf"
"$vlmd" --check-config --config "$dir/nomodel.conf" >/dev/null 2>"$dir/err"
[ $? -eq 1 ] || fail "check-config without a model: exit not 1"
grep -q "^vlmd: no model to serve: add a line 'model /path/to/checkpoint' to $dir/nomodel.conf" "$dir/err" \
  || fail "check-config without a model: $(cat "$dir/err")"
# the daemon: exit 2, the same message, the socket never bound, STATUS= for systemd
python3 - "$vlmd" "$dir" <<'PY' || fail "daemon without a model (see above)"
import os, socket, subprocess, sys
vlmd, d = sys.argv[1], sys.argv[2]
ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
ns.bind(d + "/notify")
ns.settimeout(10)
env = dict(os.environ, NOTIFY_SOCKET=d + "/notify")
p = subprocess.run([vlmd, "--config", d + "/nomodel.conf", "--socket", d + "/nm.sock"], env=env,
                   capture_output=True, text=True, timeout=30)
msgs = []
try:
    while True:
        ns.settimeout(0.5 if msgs else 10)
        msgs.append(ns.recv(4096).decode())
except OSError:
    pass
ok = True
if p.returncode != 2:
    print("FAIL: exit %d, want 2" % p.returncode); ok = False
if "no model to serve: add a line 'model /path/to/checkpoint'" not in p.stderr:
    print("FAIL: stderr: " + p.stderr); ok = False
if not any(m.startswith("STATUS=not started: no model") for m in msgs):
    print("FAIL: notify messages: %r" % msgs); ok = False
if any("READY=1" in m for m in msgs):
    print("FAIL: READY=1 without a model"); ok = False
if os.path.exists(d + "/nm.sock"):
    print("FAIL: socket bound"); ok = False
sys.exit(0 if ok else 1)
PY
check_model() { # NEEDLE DIR: check-config fails, naming the problem
  "$vlmd" --check-config --model "$2" >/dev/null 2>"$dir/err"
  rc=$?
  [ $rc -eq 1 ] || fail "check-config --model $2: exit $rc, want 1"
  grep -q -- "$1" "$dir/err" || fail "check-config --model $2: '$(cat "$dir/err")' lacks '$1'"
}
check_model "model $dir/nowhere: No such file or directory" "$dir/nowhere"
mkdir "$dir/empty"
check_model "model $dir/empty: .*config.json" "$dir/empty"
"$mkmodel" --preset tiny "$dir/m" >/dev/null || fail "vlm-mkmodel"
"$vlmd" --check-config --model "$dir/m" >"$dir/out" 2>"$dir/err" || fail "good model: $(cat "$dir/err")"
grep -q "^# model $dir/m: Qwen2VLForConditionalGeneration (bfloat16), 2 layers, hidden 128, vocab 256" "$dir/out" \
  || fail "good model: $(cat "$dir/out")"
grep -q "tokenizer.json: No such file.*vlm-chat" "$dir/err" || fail "no tokenizer warning: $(cat "$dir/err")"
grep -q "configuration OK" "$dir/err" || fail "good model: not OK"
cp -r "$dir/m" "$dir/llama"
sed -i 's/Qwen2VLForConditionalGeneration/LlamaForCausalLM/; s/"model_type": *"qwen2_vl"/"model_type": "llama"/' \
  "$dir/llama/config.json"
check_model "LlamaForCausalLM\|llama" "$dir/llama"
cp -r "$dir/m" "$dir/noweights"
rm "$dir/noweights/model.safetensors"
check_model "weights: " "$dir/noweights"

# --- the socket is checked before the weights load ---
"$vlmd" --model "$dir/m" --socket "$dir/nodir/s.sock" >/dev/null 2>"$dir/err"
[ $? -eq 1 ] || fail "bad socket folder: exit not 1"
grep -q "^vlmd: socket $dir/nodir/s.sock: folder $dir/nodir: No such file or directory" "$dir/err" \
  || fail "bad socket folder: $(cat "$dir/err")"
grep -q "event=load_progress\|event=model_loaded" "$dir/err" && fail "the weights loaded before the socket was checked"

# --- KV sizing at start-up: how many tokens, from what; a warning when one request cannot fit ---
start_log() { # LOGFILE ARGS...: run vlmd until it is ready (or exits), then stop it
  log=$1; shift
  "$vlmd" --model "$dir/m" --socket "$dir/kv.sock" --threads 1 "$@" 2>"$log" &
  pid=$!
  for _ in $(seq 600); do grep -q "event=ready" "$log" && break; kill -0 $pid 2>/dev/null || break; sleep 0.05; done
  kill $pid 2>/dev/null; wait $pid 2>/dev/null
}
# the tiny model: 2 layers x 2 KV heads x 32 x bf16 x (K,V) = 512 B per token; the automatic size
# is memory-fraction of MemAvailable, capped at max-running 32 x max_position_embeddings 4096
start_log "$dir/kv1.log"
grep -q "level=info event=kv_cache tokens=131072 blocks=8192 block_size=16 bytes=67108864 sized_by=memory-fraction memory_fraction=0.5 free_bytes=[1-9][0-9]* capped_by_need=yes max_model_len=4096 max_running=32" "$dir/kv1.log" \
  || fail "automatic KV size: $(grep kv_cache "$dir/kv1.log")"
grep -q "kv_cache_small" "$dir/kv1.log" && fail "kv_cache_small with a cache that fits"
start_log "$dir/kv2.log" --kv-memory 1M --max-model-len 4000
grep -q "level=info event=kv_cache tokens=2048 blocks=128 block_size=16 bytes=1048576 sized_by=kv-memory" "$dir/kv2.log" \
  || fail "kv-memory 1M: $(grep kv_cache "$dir/kv2.log")"
grep -q 'level=warn event=kv_cache_small tokens=2048 max_model_len=4000 msg="the KV cache holds 2048 tokens, fewer than one request of max-model-len 4000: longer requests are refused; raise kv-memory or memory-fraction, or lower max-model-len"' "$dir/kv2.log" \
  || fail "no kv_cache_small warning: $(cat "$dir/kv2.log")"
grep -q "event=ready" "$dir/kv2.log" || fail "vlmd did not serve with a small KV cache (it warns, not refuses)"
start_log "$dir/kv3.log" --memory-fraction 0.000001 --max-running 64
grep -q "memory-fraction 1e-06 of .* MiB free memory holds [0-9]* KV blocks of 8192 bytes, fewer than max-running (64): free memory, raise memory-fraction or give kv-memory" "$dir/kv3.log" \
  || fail "tiny memory-fraction: $(cat "$dir/kv3.log")"

# --- one socket variable: VLM_SOCKET; VLMD_SOCKET still read, deprecated ---
VLM_SOCKET=$dir/a.sock "$vlmd" --check-config --echo 2>/dev/null | grep -q "^socket $dir/a.sock  # environment$" \
  || fail "VLM_SOCKET not read by vlmd"
VLMD_SOCKET=$dir/b.sock "$vlmd" --check-config --echo 2>/dev/null | grep -q "^socket $dir/b.sock  # environment$" \
  || fail "VLMD_SOCKET no longer read"
VLM_SOCKET=$dir/a.sock VLMD_SOCKET=$dir/b.sock "$vlmd" --check-config --echo 2>/dev/null \
  | grep -q "^socket $dir/a.sock  # environment$" || fail "VLM_SOCKET does not win over VLMD_SOCKET"

# --- memory-fraction: a fraction ---
"$vlmd" --check-config --echo --memory-fraction 0.9 2>/dev/null | grep -q '^memory-fraction 0.9  # command line$' \
  || fail "memory-fraction 0.9"
"$vlmd" --check-config --echo --memory-fraction 1.5 >/dev/null 2>"$dir/err" && fail "memory-fraction 1.5 accepted"
grep -q -- "--memory-fraction: invalid value '1.5': expected a fraction above 0, at most 1" "$dir/err" \
  || fail "memory-fraction 1.5: $(cat "$dir/err")"

[ $fails -eq 0 ] && echo "ok cli" && exit 0
exit 1
