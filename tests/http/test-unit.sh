#!/bin/sh
# tests/http/test-unit.sh BUILD_UNITS_DIR SOURCE_UNITS_DIR VLM_SERVE — vlm-serve.service passes
# `systemd-analyze verify` without any output (ExecStart pointed at the built vlm-serve), has the
# hardening it promises, the example config is valid (--check-config), and the sysusers entry
# makes a user vlm-serve in group vlm (as root, in a scratch root). Exit 77 only without
# systemd-analyze.
set -u
built=$(realpath "$1") src=$(realpath "$2") serve=$(realpath "$3")
command -v systemd-analyze >/dev/null 2>&1 || { echo "systemd-analyze not installed: skip"; exit 77; }
dir=$(mktemp -d /tmp/vlm-serve-unit-XXXXXX)
trap 'rm -rf "$dir"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
cp "$built/vlm-serve.service" "$dir/"
grep -q '^ExecStart=/.*/vlm-serve --config /.*/vlmd/vlm-serve.conf$' "$dir/vlm-serve.service" \
  || fail "ExecStart not configured: $(grep ExecStart "$dir/vlm-serve.service")"
grep -q '@[a-z_]*@' "$dir/vlm-serve.service" && fail "unsubstituted @var@"
sed -i "s|^ExecStart=[^ ]*|ExecStart=$serve|" "$dir/vlm-serve.service"
out=$(cd "$dir" && SYSTEMD_LOG_LEVEL=notice systemd-analyze verify ./vlm-serve.service 2>&1)
rc=$?
[ $rc -eq 0 ] || fail "systemd-analyze verify: exit $rc: $out"
[ -z "$out" ] || fail "systemd-analyze verify printed: $out"
for k in '^After=vlmd.socket' '^User=vlm-serve$' '^Group=vlm$' '^ProtectSystem=strict$' \
         '^PrivateDevices=yes$' '^NoNewPrivileges=yes$' '^CapabilityBoundingSet=$' \
         '^RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6$' '^SystemCallFilter=@system-service$' \
         '^MemoryDenyWriteExecute=yes$'; do
  grep -q "$k" "$dir/vlm-serve.service" || fail "vlm-serve.service lacks $k"
done
out=$("$serve" --check-config --config "$src/vlm-serve.conf.example" 2>&1) \
  || fail "vlm-serve.conf.example does not pass --check-config: $out"
echo "$out" | grep -q '^port = 8000$' || fail "--check-config did not read the example: $out"
printf 'port = 99999\n' >"$dir/bad.conf"
"$serve" --check-config --config "$dir/bad.conf" >/dev/null 2>&1 && fail "a bad config passed --check-config"
if [ "$(id -u)" = 0 ] && command -v systemd-sysusers >/dev/null; then
  mkdir -p "$dir/root/etc"
  systemd-sysusers --root="$dir/root" "$src/vlm-serve.sysusers.conf" "$src/vlmd.sysusers.conf" \
    >/dev/null 2>&1 || fail "systemd-sysusers"
  gid=$(sed -n 's/^vlm:x:\([0-9]*\):.*/\1/p' "$dir/root/etc/group")
  grep -q "^vlm-serve:x:[0-9]*:$gid:" "$dir/root/etc/passwd" || fail "sysusers: vlm-serve not in group vlm"
else
  echo "not root: sysusers entry not applied (verify still ran)"
fi
[ $fails -eq 0 ] && echo "vlm-serve.service ok"
[ $fails -eq 0 ]
