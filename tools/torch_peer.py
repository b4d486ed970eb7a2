"""PyTorch peer for kat's benchmarks: the same models and training step, timed in PyTorch.

    /usr/bin/python3 tools/torch_peer.py train --arch kat_fmnist --batch 128 --threads 2 \
        --steps 20 --warmup 3
    /usr/bin/python3 tools/torch_peer.py infer --config-json runs/x/config.json --batch 256

train: W warm-up steps, then N timed steps of forward + cross-entropy (label smoothing 0.1) +
backward + grad-norm clip 1.0 + AdamW (lr 1e-3, wd 0.05 on weight matrices only, as kat does).
infer: eval-mode forward under torch.no_grad(). Inputs are one fixed random batch.
--config-json builds the model the config describes, model_args.global_pool ("token" / "avg")
included.
The GR-KAN rational is composed PyTorch tensor ops (kat_torch.rational), as upstream's pure-PyTorch
path would be. Prints one JSON line:
  {"images_per_s", "step_ms_median", "step_ms": [...], "peak_rss_mb", ...}
Run it on an idle machine: with another busy process on the cores, PyTorch's OpenMP threads wait
on each other and a 2-thread step can be 10x slower ("loadavg_1m_before" records the load).
"""

import argparse
import json
import os
import resource
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kat_torch  # noqa: E402

NO_DECAY = ("cls_token", "pos_embed", "weight_numerator", "weight_denominator")


def build(args) -> kat_torch.VisionTransformer:
    if args.config_json:
        with open(args.config_json) as f:
            return kat_torch.model_from_config(json.load(f))
    return kat_torch.model_from_config(kat_torch.named_config(args.arch))


def adamw(model: torch.nn.Module) -> torch.optim.AdamW:
    """AdamW decaying weight matrices only (not biases, norms, embeddings, rationals)."""
    decay, rest = [], []
    for name, p in model.named_parameters():
        (decay if p.ndim >= 2 and not name.endswith(NO_DECAY) else rest).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": 0.05},
                              {"params": rest, "weight_decay": 0.0}], lr=1e-3)


def op_benchmark(args) -> None:
    """Times one activation, forward + backward with autograd, on a random tensor: the GR-KAN
    rational as kat_torch.rational computes it (tensor ops, as upstream's PyTorch path) or GELU."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    shape = [int(s) for s in args.shape.split(",")]
    x = torch.randn(*shape, requires_grad=True)
    dy = torch.randn(*shape)
    num = torch.tensor([[0.0, 0.5, 0.3, 0.05, -0.01, 0.001]], requires_grad=True)
    den = (torch.randn(args.groups, 4) * 0.3).requires_grad_()
    times = []
    for i in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        y = kat_torch.rational(x, num, den, args.groups) if args.op == "rational" else F.gelu(x)
        y.backward(dy)
        x.grad = num.grad = den.grad = None
        if i >= args.warmup:
            times.append((time.perf_counter() - t0) * 1e3)
    print(json.dumps({"mode": "op", "op": args.op, "shape": shape, "threads": args.threads,
                      "ms_median": statistics.median(times), "ms_min": min(times),
                      "ms": [round(t, 3) for t in times]}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("mode", choices=("train", "infer", "op"))
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--arch", default="kat_fmnist",
                     help="kat_fmnist, vit_fmnist, kat_tiny_patch16_224, vit_tiny_patch16_224, ...")
    src.add_argument("--config-json", help="a kat config.json instead of --arch")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=20, help="timed steps")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--op", choices=("rational", "gelu"), default="rational",
                    help="op mode: the activation timed forward + backward")
    ap.add_argument("--shape", default="128,197,768", help="op mode: the input shape")
    ap.add_argument("--groups", type=int, default=8, help="op mode: rational groups")
    args = ap.parse_args()
    if args.mode == "op":
        op_benchmark(args)
        return

    load_before = os.getloadavg()[0]  # other busy processes make 2-thread timings meaningless
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = build(args)
    c = model.config
    x = torch.randn(args.batch, c.in_chans, c.img_size, c.img_size)
    labels = torch.randint(0, c.num_classes, (args.batch,))

    if args.mode == "train":
        model.train()
        opt = adamw(model)

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), labels, label_smoothing=0.1)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
    else:
        model.eval()

        def step() -> None:
            with torch.no_grad():
                model(x)

    times = []
    for i in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        step()
        if i >= args.warmup:
            times.append((time.perf_counter() - t0) * 1e3)
    print(json.dumps({
        "mode": args.mode,
        "arch": c.architecture,
        "global_pool": c.global_pool,
        "batch": args.batch,
        "threads": args.threads,
        "steps": args.steps,
        "params": sum(p.numel() for p in model.parameters()),
        "torch": torch.__version__,
        "images_per_s": args.batch * len(times) / (sum(times) / 1e3),
        "step_ms_median": statistics.median(times),
        "step_ms_min": min(times),
        "step_ms": [round(t, 3) for t in times],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "loadavg_1m_before": load_before,
    }))


if __name__ == "__main__":
    main()
