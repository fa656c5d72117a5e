#!/bin/sh
# tests/http/test-conf.sh VLM_SERVE — vlm-serve's settings: the config file is read, the command
# line wins over it, sizes take suffixes, and every kind of bad input is refused (exit 2) with a
# message that names the setting and, for the file, the line; --help and --version exit 0.
set -u
serve=$1
dir=$(mktemp -d /tmp/vlm-serve-conf-XXXXXX)
trap 'rm -rf "$dir"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
cat >"$dir/ok.conf" <<'CONF'
# a comment
model-dir = /srv/model   # trailing comment
port=9001
max-body = 2M
api-key = secret
allowed-media-domains = a.example, b.example
CONF
out=$("$serve" --check-config --config "$dir/ok.conf" 2>&1) || fail "ok.conf refused: $out"
for want in 'model-dir = /srv/model' 'port = 9001' 'max-body = 2M' 'api-key = (set)' \
            'allowed-media-domains = a.example, b.example' 'host = 127.0.0.1'; do
  echo "$out" | grep -qxF "$want" || fail "ok.conf: no line '$want' in: $out"
done
echo "$out" | grep -q secret && fail "--check-config printed the api key"
out=$("$serve" --check-config --config "$dir/ok.conf" --port 7 --host ::1 2>&1)
echo "$out" | grep -qx 'port = 7' || fail "the command line does not win: $out"
echo "$out" | grep -qx 'host = ::1' || fail "--host: $out"
check_bad() { # WHAT EXPECTED-TEXT ARGS...
  what=$1 text=$2
  shift 2
  out=$("$serve" "$@" 2>&1)
  rc=$?
  [ $rc -eq 2 ] || fail "$what: exit $rc (want 2): $out"
  echo "$out" | grep -qF -- "$text" || fail "$what: message lacks '$text': $out"
}
printf 'model-dir = /m\nbogus = 1\n' >"$dir/unknown.conf"
check_bad "unknown setting" "unknown.conf:2: unknown setting 'bogus'" --check-config --config "$dir/unknown.conf"
printf 'model-dir = /m\nport\n' >"$dir/noeq.conf"
check_bad "no =" "noeq.conf:2: want name = value" --check-config --config "$dir/noeq.conf"
check_bad "port range" "port: 70000 is outside 0..65535" --check-config --model-dir /m --port 70000
check_bad "port not a number" "port: want a number" --check-config --model-dir /m --port 80k
check_bad "size" "max-body: want a size" --check-config --model-dir /m --max-body lots
check_bad "log level" "log-level" --check-config --model-dir /m --log-level loud
check_bad "pixel dtype" "pixel-dtype: want auto, f32 or bf16" --check-config --model-dir /m --pixel-dtype f16
check_bad "no model dir" "--model-dir DIR is required" --check-config
check_bad "missing file" "config $dir/none.conf" --check-config --config "$dir/none.conf"
check_bad "unknown flag" "unknown flag" --model-dir /m --frobnicate
check_bad "stray argument" "unexpected argument 'extra'" --model-dir /m extra
"$serve" --help | grep -q -- '--allowed-local-media-path DIR' || fail "--help lacks a flag"
"$serve" --version | grep -q '^vlm-serve [0-9]' || fail "--version"
# a model folder without tokenizer.json: a clear start-up error, exit 1
mkdir "$dir/empty"
out=$("$serve" --model-dir "$dir/empty" --port 0 2>&1)
[ $? -eq 1 ] && echo "$out" | grep -q 'tokenizer.json' || fail "no tokenizer: $out"
# the checkpoint's chat template must be one libvlmclient renders exactly (as vlm-chat checks):
# an unknown one, or none, is refused at start with what to do; --chat-template qwen2-vl overrides
mkdir "$dir/tmpl"
cp "$(dirname "$0")/../tokenizer/data/tokenizer.json" "$dir/tmpl/"
printf '{"chat_template": "{{ messages }}"}' >"$dir/tmpl/tokenizer_config.json"
out=$("$serve" --model-dir "$dir/tmpl" --port 0 --socket "$dir/none.sock" 2>&1)
[ $? -eq 1 ] && echo "$out" | grep -q 'tokenizer_config.json: a chat template .* cannot render' &&
  echo "$out" | grep -q -- '--chat-template qwen2-vl' || fail "unknown template: $out"
rm "$dir/tmpl/tokenizer_config.json"
out=$("$serve" --model-dir "$dir/tmpl" --port 0 --socket "$dir/none.sock" 2>&1)
[ $? -eq 1 ] && echo "$out" | grep -q 'has no chat template' || fail "no template: $out"
"$serve" --model-dir "$dir/tmpl" --port 0 --socket "$dir/none.sock" --chat-template qwen2-vl \
  2>"$dir/serve.err" &
pid=$!
i=0
while [ $i -lt 600 ] && ! grep -q 'serving' "$dir/serve.err" && kill -0 $pid 2>/dev/null; do
  sleep 0.1; i=$((i + 1))
done
grep -q "serving tmpl on http" "$dir/serve.err" || fail "--chat-template qwen2-vl: $(cat "$dir/serve.err")"
kill $pid 2>/dev/null
wait $pid
[ $fails -eq 0 ] && echo "vlm-serve settings ok"
[ $fails -eq 0 ]
