#!/usr/bin/env python3
"""check-includes.py — the include graph against the floors of docs/ARCHITECTURE.md.

Reads the ```layout block of docs/ARCHITECTURE.md (one floor per line: NAME PREFIX... : ALLOWED...,
where a prefix is a folder or file of the tree and ALLOWED names other floors), resolves every
#include of the scanned folders the way the compiler does (beside the including file first, then
the include path: the tree's top and include/), and fails on every arrow the block does not allow,
naming file, line and arrow. Includes that resolve to no file of the tree (libc, generated
config.h, dlpack) are not arrows. usage: check-includes.py SOURCE_ROOT
"""
import os
import re
import sys

SCANNED = ("daemon", "shm", "kernels", "client", "tools")
INC = re.compile(r'^\s*#\s*include\s*([<"])([^">]+)[">]')


def read_layout(root):
    text = open(os.path.join(root, "docs", "ARCHITECTURE.md"), encoding="utf-8").read()
    m = re.search(r"^```layout\n(.*?)^```", text, re.S | re.M)
    if not m:
        sys.exit("check-includes: no ```layout block in docs/ARCHITECTURE.md")
    floors = []   # (name, [prefixes], set(allowed)) in file order
    for line in m.group(1).splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        left, _, right = line.partition(":")
        words = left.split()
        if len(words) < 2:
            sys.exit("check-includes: bad layout line: " + line)
        floors.append((words[0], words[1:], set(right.split())))
    names = {f[0] for f in floors}
    for name, _, allowed in floors:
        for a in allowed - {"*"}:
            if a.lstrip("!") not in names:
                sys.exit("check-includes: layout floor %s allows unknown floor %s" % (name, a))
    return floors


def floor_of(floors, path):
    """The floor whose longest prefix matches path (files before folders)."""
    best, best_len = None, -1
    for name, prefixes, _ in floors:
        for p in prefixes:
            if (path == p or (p.endswith("/") and path.startswith(p))) and len(p) > best_len:
                best, best_len = name, len(p)
    return best


def resolve(root, including, kind, target):
    cands = []
    if kind == '"':
        cands.append(os.path.normpath(os.path.join(os.path.dirname(including), target)))
    cands += [os.path.normpath(target), os.path.normpath(os.path.join("include", target))]
    for c in cands:
        if not c.startswith("..") and os.path.isfile(os.path.join(root, c)):
            return c
    return None


def allowed(floors, src, dst):
    for name, _, allow in floors:
        if name == src:
            if "!" + dst in allow:
                return False
            return src == dst or dst in allow or "*" in allow
    return False


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "."
    floors = read_layout(root)
    bad = n = 0
    for top in SCANNED:
        for dirpath, _, files in os.walk(os.path.join(root, top)):
            for f in sorted(files):
                if not f.endswith((".c", ".h", ".cu", ".cc")):
                    continue
                path = os.path.relpath(os.path.join(dirpath, f), root)
                src = floor_of(floors, path)
                if src is None:
                    print("%s: in no floor of the layout block" % path)
                    bad += 1
                    continue
                for lineno, line in enumerate(open(os.path.join(root, path), encoding="utf-8",
                                                   errors="replace"), 1):
                    m = INC.match(line)
                    if not m:
                        continue
                    dst_path = resolve(root, path, m.group(1), m.group(2))
                    if dst_path is None:
                        continue
                    n += 1
                    dst = floor_of(floors, dst_path)
                    if dst is None or not allowed(floors, src, dst):
                        print("%s:%d: %s -> %s (%s) not allowed" % (path, lineno, src, dst,
                                                                  dst_path))
                        bad += 1
    print("%d includes checked, %d not allowed" % (n, bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
