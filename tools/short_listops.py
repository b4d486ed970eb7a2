#!/usr/bin/env python3
"""Short ListOps for sanity checks: LRA's operators, at most 3 levels, 2-5 arguments, written
without LRA's "(" ")" (kat reads either). Writes basic_{train,val,test}.tsv for `kat lra listops
--data DIR`.

    python3 tools/short_listops.py DIR [--train 20000] [--heldout 500] [--seed 0]
"""
import argparse
import os
import random

OPS = ["[MIN", "[MAX", "[MED", "[SM"]


def expression(rng, depth):
    if depth >= 3 or rng.random() > 0.5:
        v = rng.randint(0, 9)
        return str(v), v
    op = rng.randrange(4)
    parts, values = [], []
    for _ in range(rng.randint(2, 5)):
        text, value = expression(rng, depth + 1)
        parts.append(text)
        values.append(value)
    s = sorted(values)
    n = len(s)
    value = [s[0], s[-1], s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) // 2, sum(s) % 10][op]
    return OPS[op] + " " + " ".join(parts) + " ]", value


def main():
    p = argparse.ArgumentParser()
    p.add_argument("dir")
    p.add_argument("--train", type=int, default=20000)
    p.add_argument("--heldout", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    rng = random.Random(a.seed)
    os.makedirs(a.dir, exist_ok=True)
    for name, count in [("train", a.train), ("val", a.heldout), ("test", a.heldout)]:
        rows = []
        while len(rows) < count:
            text, value = expression(rng, 0)
            if text.startswith("["):  # an operator at the root, not a lone digit
                rows.append(f"{text}\t{value}")
        with open(os.path.join(a.dir, f"basic_{name}.tsv"), "w") as f:
            f.write("Source\tTarget\n" + "\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
