#!/bin/sh
# tests/ops/test-install.sh BUILD_DIR SOURCE_DIR — README's install section, walked into a DESTDIR
# (`meson install --destdir`), then the INSTALLED vlmd started with the INSTALLED config:
#  - one config path: the path the installed vlmd reads by default (`vlmd --help`), the
#    --config of the installed unit's ExecStart and the file `meson install` put there agree;
#  - the installed config names no model, and the installed vlmd refuses to start on it;
#  - README's `echo "model DIR" | sudo tee -a CONFIG` makes --check-config pass;
#  - a second `meson install` keeps the edited config (and refreshes vlmd.conf.example);
#  - the installed vlmd, on the installed config, serves a request from the installed
#    vlm-generate (linked to the installed libvlmclient) and the installed vlmctl.
set -u
build=$(realpath "$1") src=$(realpath "$2")
dir=$(mktemp -d /tmp/vlmd-install-XXXXXX)
root=$dir/root
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
die() { echo "FAIL: $*"; exit 1; }
for v in $(env | sed -n 's/^\(VLMD\?_[A-Z_]*\)=.*/\1/p'); do unset "$v"; done

meson install -C "$build" --no-rebuild --destdir "$root" >"$dir/install.log" 2>&1 \
  || die "meson install: $(tail -5 "$dir/install.log")"
vlmd=$(find "$root" -path '*/sbin/vlmd' -type f | head -1)
gen=$(find "$root" -path '*/bin/vlm-generate' -type f | head -1)
ctl=$(find "$root" -path '*/bin/vlmctl' -type f | head -1)
lib=$(find "$root" -name 'libvlmclient.so*' -type f | head -1)
unit=$(find "$root" -name vlmd.service -type f | head -1)
[ -x "$vlmd" ] && [ -x "$gen" ] && [ -x "$ctl" ] && [ -n "$lib" ] && [ -n "$unit" ] \
  || die "installed files missing: vlmd=$vlmd vlm-generate=$gen vlmctl=$ctl lib=$lib unit=$unit"
export LD_LIBRARY_PATH="$(dirname "$lib")"

# one path: the binary's default, the unit's --config, the installed file
conf=$("$vlmd" --help | sed -n 's/.*config file (default \([^ ]*\) if it exists.*/\1/p')
[ -n "$conf" ] || die "vlmd --help names no default config file"
grep -q "^ExecStart=.*/vlmd --config $conf$" "$unit" || fail "unit's ExecStart does not read $conf: $(grep ExecStart "$unit")"
exe=$(sed -n 's/^ExecStart=\([^ ]*\) .*/\1/p' "$unit")
[ "$root$exe" = "$vlmd" ] || fail "unit's ExecStart $exe is not the installed vlmd $vlmd"
[ -f "$root$conf" ] || die "meson install did not create $conf (under the DESTDIR)"
[ -f "$root$conf.example" ] || fail "no $conf.example installed"
cmp -s "$root$conf" "$root$conf.example" || fail "the first install's $conf is not the example"
sconf=$(dirname "$conf")/vlm-serve.conf
if [ -f "$root$sconf.example" ]; then   # vlm-serve's settings: the same rule
  cmp -s "$root$sconf" "$root$sconf.example" || fail "the first install's $sconf is not its example"
  echo "# edited" >>"$root$sconf"
fi

# as installed: no model, so vlmd refuses to start and says where to put one
"$vlmd" --config "$root$conf" --socket "$dir/s" >/dev/null 2>"$dir/err"
[ $? -eq 2 ] || fail "installed vlmd without a model: exit not 2"
grep -q "no model to serve: add a line 'model /path/to/checkpoint' to $root$conf" "$dir/err" \
  || fail "installed vlmd without a model: $(cat "$dir/err")"

# README: a checkpoint, then `echo "model DIR" | sudo tee -a CONFIG` and --check-config
"$build/tools/vlm-mkmodel" --preset tiny --tokenizer "$src/tests/tokenizer/data/tokenizer.json" \
  "$dir/model" >/dev/null || die "vlm-mkmodel"
echo "model $dir/model" | tee -a "$root$conf" >/dev/null
"$vlmd" --check-config --config "$root$conf" >"$dir/out" 2>"$dir/err" || fail "check-config: $(cat "$dir/err")"
grep -q "^model $dir/model  # file$" "$dir/out" || fail "check-config: model not from the file"

# reinstalling keeps the edited file
meson install -C "$build" --no-rebuild --destdir "$root" >"$dir/install2.log" 2>&1 || fail "second meson install"
grep -q "^model $dir/model$" "$root$conf" || fail "the second install overwrote the edited $conf"
grep -q "^model " "$root$conf.example" && fail "the example names a model"
[ ! -f "$root$sconf.example" ] || grep -q "^# edited$" "$root$sconf" || fail "the second install overwrote $sconf"

# the installed daemon on the installed config serves the installed client
VLM_SOCKET=$dir/s "$vlmd" --config "$root$conf" --threads 1 --kv-memory 16M 2>"$dir/vlmd.log" &
pid=$!
for _ in $(seq 600); do grep -q "event=ready" "$dir/vlmd.log" && break; kill -0 $pid 2>/dev/null || break; sleep 0.05; done
grep -q "event=ready socket=$dir/s " "$dir/vlmd.log" || die "installed vlmd did not start: $(cat "$dir/vlmd.log")"
grep -q "event=kv_cache tokens=[0-9]" "$dir/vlmd.log" || fail "no kv_cache line: $(cat "$dir/vlmd.log")"
VLM_SOCKET=$dir/s "$gen" --model-dir "$dir/model" --prompt "Hello" --template --max-tokens 4 --ignore-eos \
  >"$dir/out" 2>"$dir/err" || fail "installed vlm-generate: $(cat "$dir/err")"
grep -q "finish: length" "$dir/err" || fail "vlm-generate finish line: $(cat "$dir/err")"
grep -q "completion 4 tokens" "$dir/err" || fail "vlm-generate: not 4 tokens: $(cat "$dir/err")"
VLM_SOCKET=$dir/s "$ctl" info >"$dir/out" 2>&1 || fail "installed vlmctl info: $(cat "$dir/out")"
grep -q "path *$dir/model" "$dir/out" || fail "vlmctl info: model path: $(cat "$dir/out")"

[ $fails -eq 0 ] && echo "ok install" && exit 0
exit 1
