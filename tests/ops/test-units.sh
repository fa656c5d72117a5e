#!/bin/sh
# tests/ops/test-units.sh BUILD_UNITS_DIR SOURCE_UNITS_DIR VLMD — the systemd units pass
# `systemd-analyze verify` (with ExecStart pointed at the built vlmd: verify checks the binary
# exists), with no warnings at all (verify exits 0 on "Failed to parse ..., ignoring" lines, so
# any output is a failure; a deliberately broken copy proves the check can fail). Then the
# sysusers and tmpfiles entries are applied to a scratch root (as root only: tmpfiles chowns).
# Exit 77 only when systemd-analyze is not installed.
set -u
built=$(realpath "$1") src=$(realpath "$2") vlmd=$(realpath "$3")
command -v systemd-analyze >/dev/null 2>&1 || { echo "systemd-analyze not installed: skip"; exit 77; }
dir=$(mktemp -d /tmp/vlmd-units-XXXXXX)
trap 'rm -rf "$dir"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

cp "$built/vlmd.service" "$built/vlmd.socket" "$dir/"
grep -q '^ExecStart=/.*/vlmd --config /.*/vlmd/vlmd.conf$' "$dir/vlmd.service" \
  || fail "ExecStart not configured: $(grep ExecStart "$dir/vlmd.service")"
grep -q '@[a-z_]*@' "$dir/vlmd.service" "$dir/vlmd.socket" && fail "unsubstituted @var@ in the units"
sed -i "s|^ExecStart=[^ ]*|ExecStart=$vlmd|" "$dir/vlmd.service"
out=$(cd "$dir" && SYSTEMD_LOG_LEVEL=notice systemd-analyze verify ./vlmd.socket ./vlmd.service 2>&1)
rc=$?
[ $rc -eq 0 ] || fail "systemd-analyze verify: exit $rc: $out"
[ -z "$out" ] || fail "systemd-analyze verify printed: $out"

# the check can fail: a typo must be reported
mkdir "$dir/broken"
sed 's/^Type=notify/Type=notfy/' "$dir/vlmd.service" >"$dir/broken/vlmd.service"
cp "$dir/vlmd.socket" "$dir/broken/"
out=$(cd "$dir/broken" && systemd-analyze verify ./vlmd.service 2>&1)
echo "$out" | grep -q "notfy" || fail "verify did not report a broken unit: $out"

# what systemd's notify protocol and the hardening depend on
for k in '^Type=notify$' '^WatchdogSec=' '^Restart=on-failure$' '^ProtectSystem=strict$' \
         '^NoNewPrivileges=yes$' '^RestrictAddressFamilies=AF_UNIX$' '^SystemCallFilter=@system-service$' \
         '^DevicePolicy=closed$' '^DeviceAllow=/dev/nvidiactl rw$' '^DeviceAllow=/dev/nvidia0 rw$' \
         '^DeviceAllow=/dev/nvidia-uvm rw$' '^RuntimeDirectory=vlmd$'; do
  grep -q "$k" "$dir/vlmd.service" || fail "vlmd.service lacks $k"
done
grep -q '^PrivateDevices=yes' "$dir/vlmd.service" && fail "PrivateDevices hides /dev/nvidia*"
for k in '^SocketMode=0660$' '^SocketGroup=vlm$' '^ListenStream=/'; do
  grep -q "$k" "$dir/vlmd.socket" || fail "vlmd.socket lacks $k"
done

# the example config is a valid config, except that it names no model: --check-config says so
# (vlmd refuses to start without one) and passes with one (--echo stands in for it here)
VLMD_CONFIG= "$vlmd" --check-config --config "$src/vlmd.conf.example" >/dev/null 2>"$dir/err" \
  && fail "vlmd.conf.example without a model passes --check-config"
grep -q "no model to serve: add a line 'model /path/to/checkpoint' to $src/vlmd.conf.example" "$dir/err" \
  || fail "example config without a model: $(cat "$dir/err")"
grep -q '^#model /' "$src/vlmd.conf.example" || fail "vlmd.conf.example shows no model line"
VLMD_CONFIG= "$vlmd" --check-config --config "$src/vlmd.conf.example" --echo >/dev/null 2>&1 \
  || fail "vlmd.conf.example does not pass --check-config"

if [ "$(id -u)" = 0 ] && command -v systemd-sysusers >/dev/null && command -v systemd-tmpfiles >/dev/null; then
  mkdir -p "$dir/root/etc"
  systemd-sysusers --root="$dir/root" "$src/vlmd.sysusers.conf" >/dev/null 2>&1 || fail "systemd-sysusers"
  grep -q '^vlm:' "$dir/root/etc/passwd" || fail "sysusers: no user vlm"
  grep -q '^vlm:' "$dir/root/etc/group" || fail "sysusers: no group vlm"
  systemd-tmpfiles --create --root="$dir/root" "$src/vlmd.tmpfiles.conf" >/dev/null 2>&1 || fail "systemd-tmpfiles"
  uid=$(sed -n 's/^vlm:x:\([0-9]*\):.*/\1/p' "$dir/root/etc/passwd")
  [ "$(stat -c '%u %a' "$dir/root/run/vlmd" 2>/dev/null)" = "$uid 755" ] || fail "tmpfiles: /run/vlmd not 0755 owned by vlm"
else
  echo "not root: sysusers/tmpfiles entries not applied (verify still ran)"
fi

[ $fails -eq 0 ] && echo "ok units" && exit 0
exit 1
