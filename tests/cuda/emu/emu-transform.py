#!/usr/bin/env python3
"""tests/cuda/emu/emu-transform.py IN.cu OUT.cc — rewrite a .cu file for the CPU emulator.

Kernel launches `k<<<grid, block, smem, stream>>>(args);` become
`emu_launch(grid, block, smem, stream, [=] { k(args); });` (by value: a captured graph
replays it later) and the dynamic shared-memory
declaration becomes a pointer into the emulator's per-block buffer. Nothing else changes, so the
emulated code is the kernel code as written."""
import re
import sys


def split_top(s):
    parts, depth, cur = [], 0, ''
    for ch in s:
        if ch in '([{<':
            depth += 1
        elif ch in ')]}>':
            depth -= 1
        if ch == ',' and depth == 0:
            parts.append(cur.strip())
            cur = ''
        else:
            cur += ch
    if cur.strip():
        parts.append(cur.strip())
    return parts


def main():
    src = open(sys.argv[1]).read()
    src = re.sub(r'^\s*#pragma unroll.*$', '', src, flags=re.M)   # nvcc-only
    src = re.sub(r'extern\s+__shared__\s+float\s+(\w+)\[\];',
                 r'float *\1 = (float *)emu_dynamic_smem();', src)
    out, i = '', 0
    pat = re.compile(r'([A-Za-z_][\w:]*(?:<[^<>;]*>)?)<<<')
    while True:
        m = pat.search(src, i)
        if not m:
            out += src[i:]
            break
        out += src[i:m.start()]
        j = src.index('>>>', m.end())
        cfg = split_top(src[m.end():j])
        while len(cfg) < 4:
            cfg.append('0')
        # the argument list: balanced parentheses after >>>
        k = j + 3
        assert src[k] == '(', src[m.start():k + 20]
        depth, e = 0, k
        while True:
            if src[e] == '(':
                depth += 1
            elif src[e] == ')':
                depth -= 1
                if depth == 0:
                    break
            e += 1
        args = src[k + 1:e]
        out += 'emu_launch(%s, %s, %s, %s, [=] { %s(%s); })' % (cfg[0], cfg[1], cfg[2], cfg[3],
                                                                m.group(1), args)
        i = e + 1
    open(sys.argv[2], 'w').write('#include "cuda_emu.h"\n' + out)


main()
