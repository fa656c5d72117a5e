#!/usr/bin/env python3
"""gen-corpus.py — the seed inputs of the fuzz targets (tests/fuzz/corpus-*/), written from the
wire layout of shm/wire.h so each seed starts the fuzzer inside the accepted shapes: valid
requests (text, an image run with its arena rows, stop ids, sampling knobs, logprobs), the other
opcodes, admin command lines, hellos. Fuzzer-found inputs are added to the same folders (named by
their SHA-1, as libFuzzer names them). usage: gen-corpus.py [DIR]"""
import hashlib
import os
import struct
import sys

here = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
MAGIC = 0x444D4C56


def params(max_tokens=0, min_tokens=0, temperature=0.0, top_p=0.0, min_p=0.0, rep=0.0, freq=0.0,
           pres=0.0, top_k=0, logprobs=0, seed=0, priority=0, flags=0):
    p = struct.pack("<IIffffffiIQiIQ", max_tokens, min_tokens, temperature, top_p, min_p, rep,
                    freq, pres, top_k, logprobs, seed, priority, flags, 0)
    assert len(p) == 64
    return p


def sqe(op, user_data, tokens_off=0, n_tokens=0, n_stop=0, items_off=0, stop_off=0, n_items=0,
        p=None):
    s = struct.pack("<BBHIQQIIQQ", op, 0, 0, n_items, user_data, tokens_off, n_tokens, n_stop,
                    items_off, stop_off) + (p or params()) + b"\0" * 16
    assert len(s) == 128
    return s


def item(placeholder, rows, cols, dtype, data_off, grid, fp=None):
    esz = 4 if dtype == 0 else 2
    flags = 1 if fp else 0
    it = struct.pack("<IBBHIIQIIIiQQQ", placeholder, dtype, 0, flags, rows, cols, cols * esz,
                     grid[0], grid[1], grid[2], 0, data_off, rows * cols * esz, 7)
    it += b"\0" * 64 + (fp or b"\0" * 32) + struct.pack("<IIQQQ", 0, 0, 0, 0, 0)
    assert len(it) == 192, len(it)
    return it


def arena_request(tokens, stops=(), items=(), p=None, op=2, user_data=1):
    """A request whose arrays live in the arena: tokens at 0, stop ids after, items 8-aligned,
    item rows last."""
    arena = struct.pack("<%dI" % len(tokens), *tokens)
    stop_off = len(arena)
    arena += struct.pack("<%dI" % len(stops), *stops)
    while len(arena) % 8:
        arena += b"\0"
    items_off = len(arena)
    descs, rows = b"", b""
    rows_off = items_off + 192 * len(items)
    for placeholder, n, cols, dtype, grid in items:
        esz = 4 if dtype == 0 else 2
        descs += item(placeholder, n, cols, dtype, rows_off + len(rows), grid)
        rows += bytes((i * 7) & 0xFF for i in range(n * cols * esz))
    arena += descs + rows
    return sqe(op, user_data, 0, len(tokens), len(stops), items_off if items else 0, stop_off,
               len(items), p) + arena


def write(folder, blobs):
    d = os.path.join(here, folder)
    os.makedirs(d, exist_ok=True)
    for b in blobs:
        with open(os.path.join(d, hashlib.sha1(b).hexdigest()), "wb") as f:
            f.write(b)


text = [1, 2, 3, 4, 5]
image = [1, 902] + [900] * 4 + [903, 7, 8]
reqs = [
    arena_request(text),
    arena_request(text, stops=[998, 5], p=params(max_tokens=16, min_tokens=2, temperature=0.7,
                                                 top_p=0.9, top_k=20, seed=3, flags=2)),
    arena_request(text, p=params(max_tokens=8, rep=1.1, freq=0.5, pres=0.2, logprobs=5, flags=4)),
    arena_request(image, items=[(900, 4, 64, 0, (1, 2, 2))]),
    arena_request(image + [900] * 4, items=[(900, 4, 64, 2, (1, 2, 2)), (900, 4, 64, 1, (0, 0, 0))]),
    arena_request(text, op=1),                       # ECHO
    sqe(0, 9),                                       # NOP
    sqe(3, 1),                                       # CANCEL of request 1
    arena_request(text, p=params(top_p=1.5)),        # refused: top_p
]
write("corpus-validate", reqs)
write("corpus-ereq", reqs)

admin = [b'{"cmd":"info"}', b'{"cmd":"clients"}', b'{"cmd":"requests"}', b'{"cmd":"cancel","id":5}',
         b'{"cmd":"cancel","id":"6"}', b'{"cmd":"disconnect","id":11}', b'{"cmd":"drain"}',
         b'{"cmd":"reset-prefix"}', b'{"cmd":"config-get"}', b'{"cmd":"config-get","name":"spin-us"}',
         b'{"cmd":"config-set","name":"max-waiting","value":12}',
         b'{"cmd":"config-set","name":"log-level","value":"error"}',
         b'{"cmd":"config-set","name":"socket","value":"/x"}', b'{"cmd":"metrics"}',
         b'{"cmd":"nope"}', b'not json', b'[1,2]']
write("corpus-admin", [bytes([k]) + a for a in admin for k in (0, 1)])


def hello(pmin=1, pmax=1, sq=0, cq=0, arena=0, flags=0, name=b"fuzz"):
    return struct.pack("<IHHIIQII32s", MAGIC, pmin, pmax, sq, cq, arena, flags, 1234, name)


write("corpus-handshake", [hello(), hello(flags=1), hello(sq=64, cq=256, arena=1 << 20),
                           hello(pmin=2, pmax=9), hello(sq=0xFFFFFFFF, cq=3, arena=1 << 40),
                           hello()[:40]])
