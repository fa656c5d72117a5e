#!/bin/bash
# tests/hostile/loadtime.sh VLMD MODEL: seconds from starting vlmd until its socket accepts, and
# its RSS then (the cost of reading the weights into private memory; docs/model-runtime.md).
# A measurement, not a test.
bin=$1; model=$2; sock=/tmp/trust-lt.sock; rm -f $sock
t0=$(date +%s.%N)
VLMD_CONFIG= $bin --socket $sock --model $model --threads 2 --quiet 2>/dev/null &
pid=$!
while ! python3 -c "import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect('$sock')" 2>/dev/null; do sleep 0.02; done
t1=$(date +%s.%N)
rss=$(grep VmRSS /proc/$pid/status | awk '{print $2}')
kill $pid; wait $pid
echo "$(echo "$t1 - $t0" | bc) s, RSS $rss kB"
