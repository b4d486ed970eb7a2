#!/usr/bin/env python3
"""What simple rules score on a ListOps test set: the levels a model passes through.

    build/kat lra listops --export DIR --steps 0   # or LRA's own TSV files
    python3 tools/listops_rules.py DIR [--fit 40000] [--split test|val]

Each rule maps an expression to a key (the root operator; the root operator and the root's first
and last arguments; ...) and predicts the label seen most often with that key among the first
--fit training expressions (basic_train.tsv). Prints the accuracy of each on basic_test.tsv (or
basic_val.tsv: --split val).
Reads LRA's TSV files (header Source<TAB>Target), with or without LRA's ( ) tokens. Plain Python.
"""
import argparse
import collections
import sys


def load(path, limit=None):
    out = []
    with open(path) as f:
        header = f.readline().rstrip("\n").split("\t")
        if header != ["Source", "Target"]:
            sys.exit(f"{path}: not an LRA ListOps file (header {header})")
        for line in f:
            if limit is not None and len(out) >= limit:
                break
            source, target = line.rstrip("\n").split("\t")
            out.append(([t for t in source.split() if t not in ("(", ")")], int(target)))
    return out


def root_arguments(tokens):
    """The root's direct arguments: digits, and nested operators as 'op'."""
    depth, args = 0, []
    for t in tokens:
        if t.startswith("["):
            depth += 1
            if depth == 2:
                args.append("op")
        elif t == "]":
            depth -= 1
        elif depth == 1:
            args.append(t)
    return args


def first_last(tokens):
    args = root_arguments(tokens)
    return tokens[0], args[0], args[-1]


def root_digits(tokens):
    """The root operator applied to its digit arguments alone (nested operators left out)."""
    op, digits = tokens[0], [int(a) for a in root_arguments(tokens) if a != "op"]
    if not digits:
        return op, None
    if op == "[MAX":
        return op, max(digits)
    if op == "[MIN":
        return op, min(digits)
    if op == "[SM":
        return op, sum(digits) % 10
    return op, sorted(digits)[len(digits) // 2]


RULES = [
    ("the most frequent label", lambda t: None),
    ("root operator", lambda t: t[0]),
    ("root operator, its first and last arguments", first_last),
    ("root operator, the token after it, the token before the final ]", lambda t: (t[0], t[1], t[-2])),
    ("root operator on its digit arguments", root_digits),
]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("dir", help="directory with basic_train.tsv and basic_test.tsv (basic_val.tsv)")
    p.add_argument("--fit", type=int, default=40000, help="training expressions to fit on")
    p.add_argument("--split", choices=["test", "val"], default="test", help="the split to score")
    a = p.parse_args()
    train = load(f"{a.dir}/basic_train.tsv", a.fit)
    test = load(f"{a.dir}/basic_{a.split}.tsv")
    for name, key in RULES:
        table = collections.defaultdict(collections.Counter)
        for tokens, label in train:
            table[key(tokens)][label] += 1
        overall = collections.Counter(label for _, label in train).most_common(1)[0][0]
        correct = 0
        for tokens, label in test:
            seen = table.get(key(tokens))
            correct += (seen.most_common(1)[0][0] if seen else overall) == label
        print(f"{100 * correct / len(test):6.2f}%  {name}")


if __name__ == "__main__":
    main()
