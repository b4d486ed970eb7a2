"""PyTorch peer for kat's benchmarks: the same models and training step, timed in PyTorch.

    /usr/bin/python3 tools/torch_peer.py train --arch kat_fmnist --batch 128 --threads 2 \
        --steps 20 --warmup 3
    /usr/bin/python3 tools/torch_peer.py infer --config-json runs/x/config.json --batch 256
    /usr/bin/python3 tools/torch_peer.py lm-train --arch kat_lm --batch 16 --context 256 \
        --threads 2 --steps 10 --warmup 2
    /usr/bin/python3 tools/torch_peer.py lm-generate --config-json runs/lm/config.json \
        --context 256 --prompt 16 --threads 2 --runs 5

train --ranks R: the same in R processes under DistributedDataParallel (gloo on loopback, the
batch per process, each with its own random batch); images_per_s counts all R processes'
images. R = 1 runs one plain process (no DDP), as a 1-rank kat job needs no all-reduce.
train: W warm-up steps, then N timed steps of forward + cross-entropy (label smoothing 0.1) +
backward + grad-norm clip 1.0 + AdamW (lr 1e-3, wd 0.05 on weight matrices only, as kat does).
infer: eval-mode forward under torch.no_grad(). Inputs are one fixed random batch.
--config-json builds the model the config describes, model_args.global_pool ("token" / "avg")
included.
lm-train: the byte-level language model of kat_lm_torch (docs/formats.md, "Language models"):
W + N steps of forward on one fixed random batch of B x T tokens, mean cross-entropy against
random next tokens, backward, grad-norm clip 1.0, AdamW (lr 1e-3, wd 0.1 on weight matrices
only, as kat does). tokens_per_s = B * T * N / timed seconds.
lm-generate: eval mode, torch.no_grad(), kat_lm_torch.generate_greedy from one fixed random
prompt of P tokens until the sequence holds T tokens: the prompt runs once (prefill_ms; its last
logits pick the first new token), then T - P single-token steps with the model's KV cache, each
feeding one generated token. tokens_per_s = generated tokens (T - P) / those steps' seconds, over
R timed runs after W warm-up runs (default 1); prefill is excluded, as in bench/lm_vs_torch.
--config-json is an LM config.json; without it --arch kat_lm (GR-KAN) or gpt_lm (GELU MLP) builds
n_positions 256, n_embd 256, n_layer 4, n_head 4, n_inner 1024, RoPE, tied embeddings.
The GR-KAN rational is composed PyTorch tensor ops (kat_torch.rational), as upstream's pure-PyTorch
path would be. Prints one JSON line:
  train/infer  {"images_per_s", "step_ms_median", "step_ms": [...], "peak_rss_mb", ...}
  lm-train     {"tokens_per_s", "step_ms_median", "step_ms": [...], "peak_rss_mb", ...}
  lm-generate  {"tokens_per_s", "prefill_ms", "decode_ms": [...], "runs", "peak_rss_mb", ...}
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
import kat_lm_torch  # noqa: E402
import kat_torch  # noqa: E402

NO_DECAY = ("cls_token", "pos_embed", "weight_numerator", "weight_denominator",
            "wte.weight", "wpe.weight")  # the LMs' embeddings, as kat's AdamW


def build(args) -> kat_torch.VisionTransformer:
    if args.config_json:
        with open(args.config_json) as f:
            return kat_torch.model_from_config(json.load(f))
    return kat_torch.model_from_config(kat_torch.named_config(args.arch))


def adamw(model: torch.nn.Module, weight_decay: float = 0.05) -> torch.optim.AdamW:
    """AdamW decaying weight matrices only (not biases, norms, rationals, embeddings: cls_token,
    pos_embed, an LM's wte / wpe; an untied lm_head is a weight matrix and decays)."""
    decay, rest = [], []
    for name, p in model.named_parameters():
        (decay if p.ndim >= 2 and not name.endswith(NO_DECAY) else rest).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": rest, "weight_decay": 0.0}], lr=1e-3)


def build_lm(args) -> kat_lm_torch.CausalLM:
    """The LM of --config-json, or of --arch kat_lm / gpt_lm at the default sizes."""
    if args.config_json:
        with open(args.config_json) as f:
            return kat_lm_torch.model_from_config(json.load(f))
    if args.arch not in ("kat_lm", "gpt_lm"):
        raise SystemExit(f"--arch {args.arch}: the lm modes take kat_lm or gpt_lm")
    ffn = "kan" if args.arch == "kat_lm" else "mlp"
    return kat_lm_torch.model_from_config(kat_lm_torch.LmConfig(architecture=args.arch, ffn=ffn))


def lm_fields(model: kat_lm_torch.CausalLM, args) -> dict:
    """What both lm modes report about the model and the run."""
    c = model.config
    return {"arch": c.architecture, "ffn": c.ffn, "positions": c.positions,
            "tied": c.tie_word_embeddings, "n_embd": c.n_embd, "n_layer": c.n_layer,
            "context": args.context, "threads": args.threads,
            "params": sum(p.numel() for p in model.parameters()), "torch": torch.__version__}


def lm_train_benchmark(args, load_before: float) -> None:
    """Times the LM training step on one fixed random batch [B, T] and random next tokens."""
    model = build_lm(args).train()
    args.context = args.context or model.config.n_positions
    vocab = model.config.vocab_size
    tokens = torch.randint(0, vocab, (args.batch, args.context))
    targets = torch.randint(0, vocab, (args.batch, args.context))
    opt = adamw(model, weight_decay=0.1)
    times = []
    for i in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        kat_lm_torch.lm_loss(model(tokens), targets).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if i >= args.warmup:
            times.append((time.perf_counter() - t0) * 1e3)
    print(json.dumps({"mode": "lm-train"} | lm_fields(model, args) | {
        "batch": args.batch,
        "steps": args.steps,
        "tokens_per_s": args.batch * args.context * len(times) / (sum(times) / 1e3),
        "step_ms_median": statistics.median(times),
        "step_ms_min": min(times),
        "step_ms": [round(t, 3) for t in times],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "loadavg_1m_before": load_before,
    }))


def lm_generate_benchmark(args, load_before: float) -> None:
    """Times greedy KV-cache generation from a random P-token prompt to T tokens."""
    model = build_lm(args).eval()
    args.context = args.context or model.config.n_positions
    if not 1 <= args.prompt < args.context:
        raise SystemExit(f"--prompt {args.prompt} must be at least 1 and below --context "
                         f"{args.context}")
    prompt = torch.randint(0, model.config.vocab_size, (args.prompt,))
    n_new = args.context - args.prompt
    runs = [kat_lm_torch.generate_greedy(model, prompt, n_new)
            for _ in range(args.warmup + args.runs)][args.warmup:]
    decode_s = sum(g.decode_s for g in runs)
    print(json.dumps({"mode": "lm-generate"} | lm_fields(model, args) | {
        "prompt": args.prompt,
        "generated": n_new,
        "runs": args.runs,
        "tokens_per_s": n_new * len(runs) / decode_s,
        "prefill_ms": statistics.median(g.prefill_s * 1e3 for g in runs),
        "prefill_ms_runs": [round(g.prefill_s * 1e3, 3) for g in runs],
        "decode_ms": [round(g.decode_s * 1e3, 3) for g in runs],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "loadavg_1m_before": load_before,
    }))


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


def ddp_worker(rank: int, args, port: int, results) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), GLOO_SOCKET_IFNAME="lo")
    torch.set_num_threads(args.threads)
    torch.distributed.init_process_group("gloo", rank=rank, world_size=args.ranks)
    torch.manual_seed(args.seed)
    model = build(args)
    model.train()
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    opt = adamw(model)
    c = model.config
    g = torch.Generator().manual_seed(args.seed + rank)
    x = torch.randn(args.batch, c.in_chans, c.img_size, c.img_size, generator=g)
    labels = torch.randint(0, c.num_classes, (args.batch,), generator=g)
    times = []
    for i in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(ddp(x), labels, label_smoothing=0.1)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if i >= args.warmup:
            times.append((time.perf_counter() - t0) * 1e3)
    if rank == 0:
        results.put({"times": times, "params": sum(p.numel() for p in model.parameters()),
                     "arch": c.architecture})
    torch.distributed.destroy_process_group()


def ddp_train_benchmark(args, load_before: float) -> None:
    import socket
    import torch.multiprocessing as mp
    with socket.socket() as s:  # a free port for the rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    results = mp.get_context("spawn").SimpleQueue()
    mp.spawn(ddp_worker, args=(args, port, results), nprocs=args.ranks, join=True)
    r = results.get()
    times = r["times"]
    print(json.dumps({
        "mode": "train", "arch": r["arch"], "ranks": args.ranks, "batch_per_rank": args.batch,
        "threads": args.threads, "steps": args.steps, "params": r["params"],
        "torch": torch.__version__,
        "images_per_s": args.ranks * args.batch * len(times) / (sum(times) / 1e3),
        "step_ms_median": statistics.median(times),
        "step_ms": [round(t, 3) for t in times],
        "loadavg_1m_before": load_before,
    }))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("mode", choices=("train", "infer", "op", "lm-train", "lm-generate"))
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--arch", help="kat_fmnist (default), vit_fmnist, kat_tiny_patch16_224, "
                     "vit_tiny_patch16_224, ...; lm modes: kat_lm (default) or gpt_lm")
    src.add_argument("--config-json", help="a kat config.json instead of --arch")
    ap.add_argument("--batch", type=int, help="batch size (default 128; lm-train 16)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=20, help="timed steps")
    ap.add_argument("--warmup", type=int,
                    help="untimed steps (default 3) or lm-generate runs (default 1) first")
    ap.add_argument("--context", type=int,
                    help="lm modes: tokens per sequence, T (default n_positions)")
    ap.add_argument("--prompt", type=int, default=16, help="lm-generate: prompt tokens, P")
    ap.add_argument("--runs", type=int, default=5, help="lm-generate: timed generations")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ranks", type=int, default=1, help="train: DDP processes (gloo)")
    ap.add_argument("--op", choices=("rational", "gelu"), default="rational",
                    help="op mode: the activation timed forward + backward")
    ap.add_argument("--shape", default="128,197,768", help="op mode: the input shape")
    ap.add_argument("--groups", type=int, default=8, help="op mode: rational groups")
    args = ap.parse_args()
    lm = args.mode.startswith("lm-")
    args.arch = args.arch or ("kat_lm" if lm else "kat_fmnist")
    args.batch = args.batch or (16 if lm else 128)
    args.warmup = args.warmup if args.warmup is not None else (
        1 if args.mode == "lm-generate" else 3)
    if args.mode == "op":
        op_benchmark(args)
        return

    load_before = os.getloadavg()[0]  # other busy processes make 2-thread timings meaningless
    if args.mode == "train" and args.ranks > 1:
        ddp_train_benchmark(args, load_before)
        return
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    if args.mode == "lm-train":
        lm_train_benchmark(args, load_before)
        return
    if args.mode == "lm-generate":
        lm_generate_benchmark(args, load_before)
        return
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
