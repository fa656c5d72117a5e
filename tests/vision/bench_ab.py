#!/usr/bin/env python3
"""Two or more builds of `vlm-bench vision` timed alternately on one image (f32 and bf16), so
that they see the same machine load: the way to compare a change on a shared machine.

    python3 tests/vision/bench_ab.py BUILD_A/tools/vlm-bench,BUILD_B/tools/vlm-bench [ROUNDS]
        [IMAGE]

Each round runs every build once per dtype (`--iters 30 --json`); printed per build and dtype:
the median over the rounds of each run's preprocess_ms (a median of 30), the smallest of them,
and the medians of decode_ms, planes_ms, write_ms, with the load average at the end. No figure
is judged here.
"""
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    bins = sys.argv[1].split(",")
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    img = sys.argv[3] if len(sys.argv) > 3 else os.path.join(HERE, "images", "jpeg_1280x720.jpg")
    res = {}
    for _ in range(rounds):
        for dt in ("f32", "bf16"):
            for b in bins:
                cmd = [b, "vision", "--image", img, "--iters", "30", "--json"]
                if dt == "bf16":
                    cmd.append("--bf16")
                out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
                res.setdefault((dt, b), []).append(json.loads(out.strip().splitlines()[-1]))

    def med(v, k):
        xs = [x[k] for x in v if x.get(k) is not None]
        return "%.3f" % statistics.median(xs) if xs else "-"

    for (dt, b), v in sorted(res.items()):
        pre = [x["preprocess_ms"] for x in v]
        print("%-4s %s: preprocess_ms median %.3f min %.3f | decode %s planes %s write %s" %
              (dt, b, statistics.median(pre), min(pre), med(v, "decode_ms"),
               med(v, "planes_ms"), med(v, "write_ms")))
    print("load average %.2f %.2f %.2f" % os.getloadavg())


if __name__ == "__main__":
    main()
