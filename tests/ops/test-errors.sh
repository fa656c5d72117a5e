#!/bin/sh
# tests/ops/test-errors.sh SOURCE_DIR BUILD_DIR — errors a new user meets, each with the message
# that says what to do (issue 16, "Errors that say what to do"):
#  vlm-tokenize: a one-line reason + "Try --help" (not the whole usage), out-of-range ids fail;
#  vlm-mkmodel: the flag and the allowed values; vlm-generate --embed on an image file says so
#  (before it tries the socket); the README's pkg-config line from a build tree compiles and
#  links; PYTHON.md gives the venv line for Debian 12; every relative link in the docs resolves
#  inside the repository.
set -u
src=$(realpath "$1") build=$(realpath "$2")
tok=$build/tools/vlm-tokenize mk=$build/tools/vlm-mkmodel gen=$build/tools/vlm-generate
tj=$src/tests/tokenizer/data/tokenizer.json
dir=$(mktemp -d /tmp/vlmd-errors-XXXXXX)
trap 'rm -rf "$dir"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
# expect RC NEEDLE CMD...: exit status RC and NEEDLE (fixed string) in stderr
expect() {
  want=$1 needle=$2
  shift 2
  "$@" >"$dir/out" 2>"$dir/err"
  rc=$?
  [ $rc -eq "$want" ] || fail "$*: exit $rc, want $want ($(cat "$dir/err"))"
  grep -qF -- "$needle" "$dir/err" || fail "$*: stderr '$(cat "$dir/err")' lacks '$needle'"
}
unset VLM_SOCKET VLMD_SOCKET VLM_TOKENIZER

# vlm-tokenize
expect 2 "vlm-tokenize: no tokenizer: give -t TOKENIZER.json" "$tok" decode 1
[ "$(wc -l <"$dir/err")" -eq 2 ] || fail "vlm-tokenize usage error is not two lines: $(cat "$dir/err")"
grep -q "^usage:" "$dir/err" && fail "vlm-tokenize prints the whole usage on an error"
grep -qF "Try 'vlm-tokenize --help'." "$dir/err" || fail "vlm-tokenize: no pointer to --help"
expect 2 "vlm-tokenize: unknown command 'bogus': encode, tokens, decode or chat" "$tok" -t "$tj" bogus
expect 2 "vlm-tokenize: unknown or incomplete option '--nope'" "$tok" -t "$tj" encode --nope
expect 2 "vlm-tokenize: ids must be integers separated by spaces or commas" "$tok" -t "$tj" decode abc
n=$("$tok" -t "$tj" --help >/dev/null; python3 -c 'import json,sys; t=json.load(open(sys.argv[1])); print(max(list(t["model"]["vocab"].values()) + [a["id"] for a in t["added_tokens"]]))' "$tj")
expect 0 "vlm-tokenize: warning: id 999999999 is not in this tokenizer (ids 0..$n): it decodes to nothing" \
  "$tok" -t "$tj" decode 999999999
[ "$(cat "$dir/out")" = "" ] || fail "vlm-tokenize printed text for an unknown id: $(cat "$dir/out")"
id=$("$tok" -t "$tj" encode Hello)
expect 0 "id -1 is not in this tokenizer" "$tok" -t "$tj" decode $id -1 $id
[ "$(cat "$dir/out")" = "HelloHello" ] || fail "unknown id between known ones: '$(cat "$dir/out")'"
id=$("$tok" -t "$tj" encode Hello)
"$tok" -t "$tj" decode $id >"$dir/out" 2>&1 || fail "vlm-tokenize decode $id: $(cat "$dir/out")"
[ "$(cat "$dir/out")" = "Hello" ] || fail "vlm-tokenize decode $id: '$(cat "$dir/out")'"

# vlm-mkmodel
expect 2 "vlm-mkmodel: --dtype: bad value 'f8': expected f32, f16 or bf16" "$mk" --dtype f8 "$dir/m"
expect 2 "vlm-mkmodel: --arch: bad value 'llama': expected qwen2, qwen2-vl or qwen2.5-vl" "$mk" --arch llama "$dir/m"
expect 2 "vlm-mkmodel: --layers: bad value 'x'" "$mk" --layers x "$dir/m"
[ -e "$dir/m" ] && fail "vlm-mkmodel wrote a model despite a bad value"
# its progress bar: never into a pipe unless asked, the final line when asked
"$mk" --preset tiny "$dir/pm" >/dev/null 2>"$dir/err" || fail "vlm-mkmodel tiny"
grep -q "writing weights" "$dir/err" && fail "vlm-mkmodel drew a progress bar into a pipe"
"$mk" --preset tiny --progress "$dir/pm2" >/dev/null 2>"$dir/err" || fail "vlm-mkmodel --progress"
grep -q "writing weights \[#*\] 100%  0.00 / 0.00 GiB" "$dir/err" || fail "vlm-mkmodel --progress: $(cat "$dir/err")"

# vlm-generate --embed on an image: said before any socket is tried
printf '\377\330\377\340\000\020JFIF\000' >"$dir/cat.jpg"
head -c 7000 /dev/zero >>"$dir/cat.jpg"
expect 1 "--embed $dir/cat.jpg: not a .npy or .safetensors file (it is a JPEG image): --embed takes a vision encoder's output [rows, hidden]; to send an image file, use --image FILE" \
  "$gen" --socket "$dir/none.sock" --tokens 1,2,3 --embed "$dir/cat.jpg" --placeholder 2 --grid 1,1,1
grep -q "connect" "$dir/err" && fail "vlm-generate tried the socket before checking --embed"
printf 'hello world, not an array' >"$dir/x.bin"
expect 1 "not a .npy or .safetensors file:" "$gen" --socket "$dir/none.sock" --tokens 1,2 --embed "$dir/x.bin" --placeholder 2
expect 1 "is vlmd running?" "$gen" --socket "$dir/none.sock" --tokens 1,2
[ "$(grep -o "is vlmd running" "$dir/err" | wc -l)" -eq 1 ] || fail "vlm-generate repeats the hint: $(cat "$dir/err")"

# chat templates: the checkpoint's own, recognised by its text; unknown or missing ones refused
chat=$build/tools/vlm-chat
ct=$src/tests/tokenizer/data/chat_template.json
"$mk" --preset tiny --tokenizer "$tj" "$dir/cm" >/dev/null || fail "vlm-mkmodel --tokenizer"
cmp -s "$dir/cm/chat_template.json" "$ct" || fail "vlm-mkmodel --tokenizer did not bring chat_template.json along"
nosock=$dir/none.sock
# accepted templates get as far as the socket
expect 1 "cannot connect to vlmd at $nosock" "$chat" --model-dir "$dir/cm" --socket "$nosock"
mk_variant() { # NAME: a copy of the model without chat_template.json
  rm -rf "$dir/$1"; cp -r "$dir/cm" "$dir/$1"; rm -f "$dir/$1/chat_template.json"
}
mk_variant tc-string
python3 -c 'import json,sys; t=json.load(open(sys.argv[1]))["chat_template"]; json.dump({"model_max_length": 32768, "chat_template": t}, open(sys.argv[2], "w"))' \
  "$ct" "$dir/tc-string/tokenizer_config.json"
expect 1 "cannot connect to vlmd" "$chat" --model-dir "$dir/tc-string" --socket "$nosock"
mk_variant tc-list
python3 -c 'import json,sys; t=json.load(open(sys.argv[1]))["chat_template"]; json.dump({"chat_template": [{"name": "tool_use", "template": "x"}, {"name": "default", "template": t}]}, open(sys.argv[2], "w"))' \
  "$ct" "$dir/tc-list/tokenizer_config.json"
expect 1 "cannot connect to vlmd" "$chat" --model-dir "$dir/tc-list" --socket "$nosock"
mk_variant tc-jinja
python3 -c 'import json,sys; open(sys.argv[2], "w").write(json.load(open(sys.argv[1]))["chat_template"])' "$ct" "$dir/tc-jinja/chat_template.jinja"
expect 1 "cannot connect to vlmd" "$chat" --model-dir "$dir/tc-jinja" --socket "$nosock"
# one character off: not the template vlm_chat_encode renders
mk_variant tc-other
python3 -c 'import json,sys; t=json.load(open(sys.argv[1]))["chat_template"]; json.dump({"chat_template": t.replace("helpful assistant", "helpful  assistant")}, open(sys.argv[2], "w"))' \
  "$ct" "$dir/tc-other/chat_template.json"
expect 1 "$dir/tc-other/chat_template.json: a chat template vlm-chat/vlm-generate cannot render (1018 bytes, not the Qwen2-VL / Qwen2.5-VL one): if it formats turns the same way, pass --chat-template qwen2-vl" \
  "$chat" --model-dir "$dir/tc-other" --socket "$nosock"
grep -q "connect" "$dir/err" && fail "vlm-chat connected despite an unknown template"
expect 1 "cannot connect to vlmd" "$chat" --model-dir "$dir/tc-other" --chat-template qwen2-vl --socket "$nosock"
expect 1 "cannot connect to vlmd" "$chat" --model-dir "$dir/tc-other" --chat-template "$ct" --socket "$nosock"
expect 1 "chat template '$dir/nosuch': neither a known name (qwen2-vl) nor a file" \
  "$chat" --model-dir "$dir/cm" --chat-template "$dir/nosuch" --socket "$nosock"
expect 1 "cannot render" "$gen" --socket "$nosock" --model-dir "$dir/tc-other" --prompt hi --template
grep -q "connect" "$dir/err" && fail "vlm-generate connected despite an unknown template"
mk_variant tc-none
expect 1 "$dir/tc-none has no chat template (chat_template.jinja, chat_template.json, or \"chat_template\" in tokenizer_config.json): a base model? pass --chat-template qwen2-vl" \
  "$chat" --model-dir "$dir/tc-none" --socket "$nosock"
expect 2 "which chat template? give --model-dir DIR" "$chat" --tokenizer "$tj" --socket "$nosock"

# README: pkg-config from a build tree (nothing installed)
if command -v pkg-config >/dev/null && command -v cc >/dev/null; then
  flags=$(PKG_CONFIG_PATH=$build/meson-uninstalled pkg-config --cflags --libs libvlmclient-uninstalled) \
    || fail "pkg-config libvlmclient-uninstalled: not found in $build/meson-uninstalled"
  san=   # a sanitizer build's library needs the runtime in the program too
  ldd "$build/client/libvlmclient.so" 2>/dev/null | grep -q libasan && san=-fsanitize=address,undefined
  cc $san "$src/examples/generate.c" $flags -Wl,-rpath,"$build/client" -o "$dir/generate" 2>"$dir/err" \
    || fail "README's uninstalled pkg-config line does not build examples/generate.c: $(cat "$dir/err")"
  VLM_SOCKET=$dir/none.sock "$dir/generate" 1 2 >/dev/null 2>"$dir/err" && fail "example ran without vlmd"
  grep -q "generate: " "$dir/err" || fail "example: $(cat "$dir/err")"
  grep -qF 'PKG_CONFIG_PATH=build/meson-uninstalled pkg-config --cflags --libs' "$src/README.md" \
    || fail "README does not give the uninstalled pkg-config form"
fi

# PYTHON.md: Debian 12's externally managed Python
grep -qF 'python3 -m venv' "$src/docs/PYTHON.md" || fail "PYTHON.md gives no venv line"
grep -qF 'externally-managed-environment' "$src/docs/PYTHON.md" || fail "PYTHON.md does not name the pip error"

# --version of every program names the build's optional parts; --help says what it does
for t in tools/vlm-generate tools/vlm-chat tools/vlm-mkmodel tools/vlm-tokenize tools/vlm-bench \
         tools/vlmctl tools/vlm-serve daemon/vlmd; do
  [ -x "$build/$t" ] || continue
  "$build/$t" --version 2>&1 | grep -qE '[+-]CUDA [+-]io_uring [+-]HTTP \+systemd$' \
    || fail "$t --version: $("$build/$t" --version 2>&1)"
  [ "$("$build/$t" --help 2>&1 | wc -l)" -ge 3 ] || fail "$t --help is too short"
done

# every relative link of the docs resolves inside the repository
python3 - "$src" <<'PY' || fail "broken or outside links (above)"
import os, re, sys
root = os.path.realpath(sys.argv[1]); bad = 0
for d, dirs, files in os.walk(root):
    dirs[:] = [x for x in dirs if not x.startswith(("build", ".")) and x != "node_modules"]
    for f in files:
        if not f.endswith(".md"):
            continue
        p = os.path.join(d, f)
        text = open(p, encoding="utf-8").read()
        for m in re.finditer(r"\]\(([^)#\s]+)", text):
            link = m.group(1)
            if re.match(r"[a-z]+:", link):
                continue
            t = os.path.realpath(os.path.join(d, link))
            if not t.startswith(root + os.sep) or not os.path.exists(t):
                print("FAIL: %s: link %s" % (os.path.relpath(p, root), link)); bad += 1
        for m in re.finditer(r"`(\.\./[^`\s]+\.md)`", text):
            t = os.path.realpath(os.path.join(d, m.group(1)))
            if not t.startswith(root + os.sep):
                print("FAIL: %s: refers to %s, outside the repository" % (os.path.relpath(p, root), m.group(1))); bad += 1
sys.exit(1 if bad else 0)
PY

[ $fails -eq 0 ] && echo "ok errors" && exit 0
exit 1
