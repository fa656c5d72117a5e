#!/usr/bin/env python3
"""tools/bench-peers-convert.py — run llama.cpp's convert_hf_to_gguf.py on a vlm-mkmodel checkpoint.

Why a wrapper: the converter names the BPE pre-tokenizer by hashing how the tokenizer in the
folder encodes a fixed text, and refuses ("BPE pre-tokenizer was not recognized") when the hash is
not one of the published tokenizers'. The benchmark checkpoint carries the small test Qwen2
tokenizer (tests/tokenizer/data/tokenizer.json: same pre-tokenizer rules, 1 775 tokens), whose
hash is unknown. The pre-tokenizer name only steers llama.cpp's text tokenization, which the
benchmarks never use (llama-bench and llama-batched-bench feed random token ids), so when and only
when the converter refuses, this wrapper answers with the name given by --pre (default "qwen2", the
Qwen2 family's) and says so on stderr. Nothing else of the converter changes.

usage: bench-peers-convert.py LLAMA_CPP_DIR [--pre NAME] -- CONVERTER_ARGS...
"""
import os
import sys


def main() -> int:
    argv = sys.argv[1:]
    if len(argv) < 2 or "--" not in argv:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    sep = argv.index("--")
    head, conv_args = argv[:sep], argv[sep + 1:]
    llama_dir = head[0]
    pre = "qwen2"
    if len(head) == 3 and head[1] == "--pre":
        pre = head[2]
    elif len(head) != 1:
        print("bench-peers-convert.py: bad arguments", file=sys.stderr)
        return 2

    sys.path.insert(0, llama_dir)
    os.environ.pop("NO_LOCAL_GGUF", None)   # the converter then uses llama.cpp's own gguf-py
    import convert_hf_to_gguf as conv          # noqa: E402  (its main() only runs as __main__)
    from conversion import base                # noqa: E402

    orig = base.TextModel.get_vocab_base_pre

    def pre_or_named(self, tokenizer):
        try:
            return orig(self, tokenizer)
        except NotImplementedError:
            print(f"bench-peers-convert.py: pre-tokenizer hash unknown; naming it {pre!r} "
                  "(tokenization only; the benchmarks feed token ids)", file=sys.stderr)
            return pre

    base.TextModel.get_vocab_base_pre = pre_or_named
    sys.argv = ["convert_hf_to_gguf.py"] + conv_args
    conv.main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
