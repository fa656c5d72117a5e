#!/usr/bin/env python3
"""Differential test against Hugging Face (by hand, needs `tokenizers`): random strings from many
Unicode blocks mixed with added tokens, encoded by both (with and without special-token parsing)
for the three fixture configurations, then random id sequences decoded by both.

usage: diff_vs_hf.py [SEED] [N] [LIBVLMCLIENT]   (default lib: build/client/libvlmclient.so)
Prints the first mismatches and their counts.
"""
import ctypes
import os
import random
import sys
from tokenizers import Tokenizer
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
lib = ctypes.CDLL(sys.argv[3] if len(sys.argv) > 3 else
                  os.path.join(ROOT, "build", "client", "libvlmclient.so"))
lib.vlm_tokenizer_load.argtypes=[ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p), ctypes.c_char_p, ctypes.c_size_t]
lib.vlm_tokenizer_encode.argtypes=[ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.POINTER(ctypes.POINTER(ctypes.c_int32)), ctypes.POINTER(ctypes.c_size_t)]
lib.vlm_tokenizer_decode.argtypes=[ctypes.c_void_p, ctypes.POINTER(ctypes.c_int32), ctypes.c_size_t, ctypes.c_uint, ctypes.POINTER(ctypes.c_char_p), ctypes.POINTER(ctypes.c_size_t)]
def load(p):
    t=ctypes.c_void_p(); err=ctypes.create_string_buffer(256)
    assert lib.vlm_tokenizer_load(p.encode(), ctypes.byref(t), err, 256)==0, err.value
    return t
def enc(t, s, flags):
    b=s.encode('utf-8'); ids=ctypes.POINTER(ctypes.c_int32)(); n=ctypes.c_size_t()
    r=lib.vlm_tokenizer_encode(t, b, len(b), flags, ctypes.byref(ids), ctypes.byref(n))
    assert r>=0, r
    return [ids[i] for i in range(n.value)]
ranges=[(0x20,0x7e),(0x9,0xd),(0x80,0x24f),(0x300,0x36f),(0x370,0x3ff),(0x400,0x4ff),(0x590,0x6ff),(0x900,0x97f),(0xe00,0xe7f),(0x1100,0x11ff),(0x2000,0x206f),(0x3000,0x30ff),(0x4e00,0x4fff),(0xac00,0xad00),(0xfe00,0xfe0f),(0x1f300,0x1f6ff),(0x1f900,0x1f9ff),(0xff00,0xffef),(0x10000,0x1007f),(0xe0000,0xe007f)]
words=["<|im_end|>","<|im_start|>","'s","'LL"," ","  ","\n","\r\n","\t","123","word","[LSTRIP]","[RSTRIP]","[BOTH]","café","cafe\u0301","Ω","<sp lit>","<tool_call>","\u200d","\u0085","\u00a0"]
rng=random.Random(int(sys.argv[1]) if len(sys.argv)>1 else 0)
def rand_text():
    out=[]
    for _ in range(rng.randint(0,30)):
        if rng.random()<0.25: out.append(rng.choice(words))
        else:
            a,b=rng.choice(ranges); cp=rng.randint(a,b)
            if 0xd800<=cp<=0xdfff: continue
            out.append(chr(cp))
    return "".join(out)
bad=0; N=int(sys.argv[2]) if len(sys.argv)>2 else 20000
for path in ["tokenizer.json","tokenizer-flags.json","tokenizer-gpt2.json"]:
    full=os.path.join(HERE, "data", path)
    hf=Tokenizer.from_file(full); t=load(full)
    for i in range(N):
        s=rand_text()
        for flags in (0,1):
            hf.encode_special_tokens = bool(flags)
            want=hf.encode(s).ids
            got=enc(t,s,flags)
            if want!=got:
                bad+=1
                if bad<8: print(path, flags, repr(s), "\n want", want, "\n got ", got)
    hf.encode_special_tokens=False
print("mismatches", bad)
# decode differential
lib.vlm_text_free.argtypes=[ctypes.c_char_p]
bad=0
for path in ["tokenizer.json","tokenizer-flags.json"]:
    full=os.path.join(HERE, "data", path)
    hf=Tokenizer.from_file(full); t=load(full); V=hf.get_vocab_size(with_added_tokens=True)
    for i in range(N//4):
        ids=[rng.randrange(V+3) for _ in range(rng.randint(0,20))]
        arr=(ctypes.c_int32*len(ids))(*ids)
        for skip in (0,1):
            out=ctypes.c_char_p(); n=ctypes.c_size_t()
            assert lib.vlm_tokenizer_decode(t, arr, len(ids), skip, ctypes.byref(out), ctypes.byref(n))==0
            got=ctypes.string_at(out, n.value).decode('utf-8')
            want=hf.decode(ids, skip_special_tokens=bool(skip))
            if got!=want:
                bad+=1
                if bad<5: print(path, ids, skip, repr(want), repr(got))
print("decode mismatches", bad)
