#!/bin/sh
# tests/ops/test-cli.sh VLMD — vlmd's command line: --help/--version, --check-config exit codes
# and messages that name file and line, precedence defaults < file < environment < flags as
# --check-config prints it, and a daemon that refuses to start on a bad file.
set -u
vlmd=$1
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
"$vlmd" --version | grep -q '^vlmd [0-9]' || fail "--version"

# a good file: exit 0, the values it set, their source
cat >"$dir/good.conf" <<'CONF'
# comment
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

[ $fails -eq 0 ] && echo "ok cli" && exit 0
exit 1
