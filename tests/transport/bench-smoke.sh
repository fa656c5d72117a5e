#!/bin/sh
# tests/transport/bench-smoke.sh — `vlm-bench transport --json` runs end to end and its last line
# is one JSON object with the fields CI and the README rely on (no timing is asserted here).
set -eu
bench=$1
out=$("$bench" transport --json --iters 1000)
printf '%s\n' "$out" | tail -n 1 | python3 -c '
import json, sys
r = json.loads(sys.stdin.read())
need = ["ring_rtt_p50_us", "ring_rtt_p99_us", "ring_sleep_rtt_p50_us", "uds_rtt_p50_us",
        "futex_rtt_p50_us", "ring_entries_per_s"]
missing = [k for k in need if k not in r]
bad = [k for k in need if k in r and not (isinstance(r[k], (int, float)) and r[k] > 0)]
if missing or bad:
    sys.exit("missing %s, not positive %s" % (missing, bad))
print("ok:", {k: r[k] for k in need})
'
