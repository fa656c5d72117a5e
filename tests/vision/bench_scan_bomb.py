#!/usr/bin/env python3
"""CPU time of loading a JPEG scan bomb: a flat grey 4096x4096 progressive JPEG (from PIL) with
its last scan (33 bytes) repeated N times, through vlmclient.Image (vlm_image_load_memory).
Not a test (no timing is asserted anywhere); it measures what the scan limit of
client/imgdecode.c bounds.

    PYTHONPATH=python VLM_LIBRARY=build/client /root/venv-ref/bin/python \\
        tests/vision/bench_scan_bomb.py 494 495 2000

(PIL writes 6 scans, so 494 repeats = 500 scans, the most that decode.)
"""
import io
import sys
import time

import numpy as np
from PIL import Image

from vlmclient.vision import Image as VImage


def last_scan(d):
    """(start of the last SOS segment, start of EOI) of JPEG bytes d."""
    i, last = 2, None
    while True:
        m = d[i + 1]
        if m == 0xD9:
            return last, i
        seg = d[i + 2] << 8 | d[i + 3]
        if m != 0xDA:
            i += 2 + seg
            continue
        last, i = i, i + 2 + seg
        while not (d[i] == 0xFF and d[i + 1] != 0 and not 0xD0 <= d[i + 1] <= 0xD7):
            i += 1


def main():
    b = io.BytesIO()
    Image.fromarray(np.full((4096, 4096), 128, np.uint8), "L").save(b, "JPEG", quality=80,
                                                                     progressive=True)
    d = b.getvalue()
    last, eoi = last_scan(d)
    print("base %d bytes, last scan %d bytes" % (len(d), eoi - last))
    for reps in [int(a) for a in sys.argv[1:]] or [2000]:
        bomb = d[:eoi] + d[last:eoi] * reps + b"\xff\xd9"
        t = time.process_time()
        try:
            VImage(bomb, max_pixels=448 * 448)
            r = "loaded"
        except Exception as e:  # the refusal is the expected outcome past the limit
            r = str(e)
        print("%d repeats, %d bytes: cpu %.2f s, %s" % (reps, len(bomb),
                                                        time.process_time() - t, r))


if __name__ == "__main__":
    main()
