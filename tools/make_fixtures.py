"""Writes the PyTorch parity fixtures of kat's C++ tests into tests/fixtures/.

    /usr/bin/python3 tools/make_fixtures.py [--out tests/fixtures]

Deterministic (fixed seeds). Every input and parameter is drawn in float32 and stored as float32;
every output and gradient is computed from those exact values in float64 and then rounded to
float32, so a float32 implementation should match to ~1e-5 relative (tests use ~1e-4).

Files:
  rational.safetensors              GR-KAN forward/backward on [4, 32], groups 4
  kat_tiny_model.safetensors        tiny KAT: parameters, input, labels, logits, loss, grad.<name>
  vit_tiny_model.safetensors        the same for the ViT (GELU MLP) variant
  kat_avg_model.safetensors         the tiny KAT with global_pool "avg" (fc_norm.*, no norm.*)
  torch_checkpoint/                 checkpoint directory written by kat_torch.save_checkpoint
  torch_checkpoint_io.safetensors   uint8 pixels and the logits of that checkpoint on them
  lm_kat_rope_tied.safetensors      tiny byte-level LM (GR-KAN, RoPE, tied): parameters, tokens,
                                    targets, logits, loss, grad.<name>
  lm_gpt_learned_untied.safetensors the same for GELU MLP, learned positions, untied lm_head

The rational gradients are checked against central finite differences in float64 before
anything is written; the language models' gradients with torch.autograd.gradcheck and finite
differences, and their KV-cache decoding against full recomputation.
"""

import argparse
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kat_lm_torch  # noqa: E402
import kat_torch  # noqa: E402
import safetensors_np  # noqa: E402

SMOOTHING = 0.1
FD_STEP = 1e-6
FD_TOLERANCE = 1e-6


def f32(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(torch.float32).numpy()


# ---------------------------------------------------------------------------------------------
# rational.safetensors


def rational_inputs(gen: torch.Generator) -> dict[str, torch.Tensor]:
    """x [4, 32] (a -5..5 ramp, values within 1e-1 of 0 but never 0, random spread), num [1, 6]
    (perturbed swish), den [4, 4] (mixed signs, none 0), dy [4, 32]; float32-exact float64."""
    ramp = torch.linspace(-5.0, 5.0, 32)  # even count: no exact 0
    near0 = torch.logspace(-3, -1, 32) * torch.where(torch.rand(32, generator=gen) < 0.5, -1, 1)
    spread = (torch.randn(2, 32, generator=gen) * 2.0).clamp(-5.0, 5.0)
    spread = torch.where(spread.abs() < 1e-3, torch.full_like(spread, 0.5), spread)
    x = torch.cat([ramp[None], near0[None], spread])
    swish_num, _ = kat_torch.RATIONAL_INIT["swish"]
    num = torch.tensor([swish_num]) + 0.02 * torch.randn(1, 6, generator=gen)
    den = 0.3 * torch.randn(4, 4, generator=gen)
    den = torch.where(den.abs() < 0.02, torch.full_like(den, -0.05), den)
    den[0, 1], den[2, 3] = -abs(den[0, 1]) - 0.05, -abs(den[2, 3]) - 0.05  # surely some negative
    dy = torch.randn(4, 32, generator=gen)
    return {k: v.to(torch.float32).to(torch.float64) for k, v in
            {"x": x, "num": num, "den": den, "dy": dy}.items()}


def check_rational_gradients(x, num, den, dy, groups, grads) -> None:
    """Central finite differences of L = sum(F(x) * dy) in float64 against autograd."""

    def loss(x_, num_, den_) -> float:
        return float((kat_torch.rational(x_, num_, den_, groups) * dy).sum())

    fd_dx = (kat_torch.rational(x + FD_STEP, num, den, groups)
             - kat_torch.rational(x - FD_STEP, num, den, groups)) / (2 * FD_STEP) * dy
    fd = {"dx": fd_dx}
    for key, param in (("dnum", num), ("dden", den)):
        g = torch.zeros_like(param)
        for i in range(param.numel()):
            step = torch.zeros_like(param).view(-1)
            step[i] = FD_STEP
            step = step.view_as(param)
            plus = loss(x, num + step, den) if key == "dnum" else loss(x, num, den + step)
            minus = loss(x, num - step, den) if key == "dnum" else loss(x, num, den - step)
            g.view(-1)[i] = (plus - minus) / (2 * FD_STEP)
        fd[key] = g
    for key, approx in fd.items():
        rel = float((grads[key] - approx).abs().max() / grads[key].abs().max())
        print(f"  finite differences vs autograd, {key}: max relative error {rel:.2e}")
        assert rel < FD_TOLERANCE, f"rational {key}: autograd and finite differences differ ({rel})"


def write_rational(out: str) -> None:
    groups = 4
    gen = torch.Generator().manual_seed(1)
    t = rational_inputs(gen)
    x = t["x"].clone().requires_grad_()
    num = t["num"].clone().requires_grad_()
    den = t["den"].clone().requires_grad_()
    y = kat_torch.rational(x, num, den, groups)
    (y * t["dy"]).sum().backward()
    grads = {"dx": x.grad, "dnum": num.grad, "dden": den.grad}
    check_rational_gradients(t["x"], t["num"], t["den"], t["dy"], groups, grads)
    tensors = {k: f32(v) for k, v in (t | {"y": y} | grads).items()}
    save(out, "rational.safetensors", tensors, {"groups": str(groups)})


# ---------------------------------------------------------------------------------------------
# kat_tiny_model / vit_tiny_model


def randomize(model: torch.nn.Module, gen: torch.Generator) -> None:
    """Float32 random weights that exercise every path: weights 0.2 randn, biases 0.1 randn,
    LayerNorm gains 1 + 0.1 randn, rationals perturbed from their init with mixed-sign
    denominators (no coefficient exactly 0). LayerNorms are timm's norm* / fc_norm and GPT-2's
    ln_*."""
    num_scale = torch.tensor([[0.05, 0.05, 0.03, 0.01, 0.003, 0.001]])
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=gen)
            if name.endswith("weight_numerator"):
                p.add_(num_scale * r)
            elif name.endswith("weight_denominator"):
                d = 0.2 * r
                p.add_(torch.where(d.abs() < 0.01, torch.full_like(d, -0.03), d))
            elif ".norm" in name or ".ln_" in name or name.startswith(("norm.", "fc_norm.",
                                                                          "ln_")):
                p.copy_(1.0 + 0.1 * r if name.endswith("weight") else 0.1 * r)
            elif name.endswith("bias"):
                p.copy_(0.1 * r)
            else:
                p.copy_(0.2 * r)


def tiny_config(ffn: str, global_pool: str = "token") -> kat_torch.ModelConfig:
    return kat_torch.ModelConfig(
        architecture=f"{'kat' if ffn == 'kan' else 'vit'}_fixture", img_size=8, patch_size=4,
        in_chans=2, embed_dim=16, depth=2, num_heads=2, mlp_ratio=2.0, num_classes=5,
        rational_groups=4, ffn=ffn, act_init="swish", mean=[0.5, 0.5], std=[0.5, 0.5],
        global_pool=global_pool)


def write_model(out: str, ffn: str, seed: int, global_pool: str = "token",
                name: str | None = None) -> None:
    gen = torch.Generator().manual_seed(seed)
    cfg = tiny_config(ffn, global_pool)
    model = kat_torch.model_from_config(cfg)
    randomize(model, gen)
    model = model.double()
    x = torch.randn(3, 2, 8, 8, generator=gen).to(torch.float32).to(torch.float64)
    labels = torch.randint(0, cfg.num_classes, (3,), generator=gen)
    logits = model(x)
    loss = F.cross_entropy(logits, labels, label_smoothing=SMOOTHING)
    logp = logits.log_softmax(-1)
    by_hand = ((1 - SMOOTHING) * -logp.gather(1, labels[:, None]).squeeze(1)
               + SMOOTHING * -logp.mean(-1)).mean()
    assert torch.allclose(loss, by_hand, rtol=1e-12), "label smoothing definition mismatch"
    loss.backward()
    tensors = {name: f32(p) for name, p in model.named_parameters()}
    tensors |= {f"grad.{name}": f32(p.grad) for name, p in model.named_parameters()}
    tensors |= {"input": f32(x), "labels": labels.numpy().astype(np.int64),
                "logits": f32(logits), "loss": f32(loss)}
    config_text = json.dumps(kat_torch.config_to_dict(cfg), indent=2) + "\n"
    name = name or f"{'kat' if ffn == 'kan' else 'vit'}_tiny_model.safetensors"
    save(out, name, tensors, {"config": config_text, "smoothing": str(SMOOTHING)})


# ---------------------------------------------------------------------------------------------
# torch_checkpoint/ + torch_checkpoint_io.safetensors


def write_checkpoint(out: str) -> None:
    gen = torch.Generator().manual_seed(3)
    cfg = kat_torch.ModelConfig(
        architecture="kat_fixture", img_size=8, patch_size=4, in_chans=1, embed_dim=16, depth=2,
        num_heads=2, mlp_ratio=2.0, num_classes=3, rational_groups=4, ffn="kan",
        act_init="swish", mean=[0.3], std=[0.4])
    model = kat_torch.model_from_config(cfg)
    randomize(model, gen)
    directory = os.path.join(out, "torch_checkpoint")
    kat_torch.save_checkpoint(directory, model, cfg)
    print(f"wrote {directory}/config.json, model.safetensors")
    loaded, saved_cfg = kat_torch.load_checkpoint(directory)  # the round trip is part of the test
    pixels = torch.randint(0, 256, (2, 1, 8, 8), generator=gen, dtype=torch.uint8)
    p = saved_cfg["pretrained_cfg"]
    with torch.no_grad():
        logits = loaded.double()(kat_torch.normalize(pixels, p["mean"], p["std"]).double())
    save(out, "torch_checkpoint_io.safetensors", {"pixels": pixels.numpy(), "logits": f32(logits)})


# ---------------------------------------------------------------------------------------------
# lm_kat_rope_tied / lm_gpt_learned_untied

GRADCHECK_ATOL = 1e-8
GRADCHECK_RTOL = 1e-6


def lm_loss_of(model: torch.nn.Module, names: list[str], tokens: torch.Tensor,
               targets: torch.Tensor):
    """The loss as a function of the parameters `names` (the others fixed), for gradcheck."""

    def loss(*values: torch.Tensor) -> torch.Tensor:
        logits = torch.nn.utils.stateless.functional_call(model, dict(zip(names, values)),
                                                          (tokens,))
        return kat_lm_torch.lm_loss(logits, targets)

    return loss


def check_lm_gradients(model: torch.nn.Module, tokens: torch.Tensor,
                       targets: torch.Tensor) -> None:
    """float64 checks of autograd's parameter gradients of the LM loss: torch.autograd.gradcheck
    over every entry of every rational (act1, act2), gradcheck's fast mode (random directional
    derivatives) over all parameters at once, and central finite differences of up to 5 spread
    entries of every parameter (relative to that parameter's max |grad|)."""
    params = dict(model.named_parameters())
    rationals = [n for n in params if n.endswith(("weight_numerator", "weight_denominator"))]
    for names, fast in ((rationals, False), (list(params), True)):
        if not names:
            continue
        inputs = tuple(params[n].detach().clone().requires_grad_() for n in names)
        assert torch.autograd.gradcheck(lm_loss_of(model, names, tokens, targets), inputs,
                                        atol=GRADCHECK_ATOL, rtol=GRADCHECK_RTOL, fast_mode=fast)
        what = "all parameters, fast mode" if fast else "every rational coefficient"
        print(f"  gradcheck ({what}, {sum(p.numel() for p in inputs)} entries, "
              f"atol {GRADCHECK_ATOL}, rtol {GRADCHECK_RTOL}): passed")
    model.zero_grad(set_to_none=True)
    kat_lm_torch.lm_loss(model(tokens), targets).backward()
    worst, where = 0.0, ""
    with torch.no_grad():
        for name, p in params.items():
            n = p.numel()
            scale = float(p.grad.abs().max()) or 1.0
            for i in sorted({0, n // 4, n // 2, 3 * n // 4, n - 1}):
                flat = p.view(-1)
                saved = float(flat[i])
                flat[i] = saved + FD_STEP
                plus = float(kat_lm_torch.lm_loss(model(tokens), targets))
                flat[i] = saved - FD_STEP
                minus = float(kat_lm_torch.lm_loss(model(tokens), targets))
                flat[i] = saved
                rel = abs((plus - minus) / (2 * FD_STEP) - float(p.grad.view(-1)[i])) / scale
                if rel >= worst:
                    worst, where = rel, f"{name}[{i}]"
    model.zero_grad(set_to_none=True)
    print(f"  finite differences vs autograd, up to 5 entries of each of {len(params)} "
          f"parameters: max relative error {worst:.2e} ({where})")
    assert worst < FD_TOLERANCE, f"LM gradients: autograd and finite differences differ ({worst})"


def write_lm(out: str, ffn: str, positions: str, tied: bool, seed: int, name: str) -> None:
    """A tiny LM (vocab 257, 16 positions, D 16, 2 layers, 2 heads, H 32, 4 groups): random
    float32 parameters, tokens [2, 11] with their next tokens as targets (one end-of-text token
    forced so its embedding row is used), float64 logits, mean cross-entropy and gradients."""
    gen = torch.Generator().manual_seed(seed)
    cfg = kat_lm_torch.tiny_config(ffn, positions, tied)
    model = kat_lm_torch.model_from_config(cfg)
    randomize(model, gen)
    model = model.double()
    sequence = torch.randint(0, cfg.vocab_size, (2, 12), generator=gen)
    sequence[1, 5] = kat_lm_torch.END_OF_TEXT
    tokens, targets = sequence[:, :-1].contiguous(), sequence[:, 1:].contiguous()
    check_lm_gradients(model, tokens, targets)
    kv = max(kat_lm_torch.check_kv_cache(model, tokens[0, :5], cfg.n_positions - 5),
             kat_lm_torch.check_kv_cache(model, tokens[1, :1], cfg.n_positions - 1))
    print(f"  KV-cache greedy decoding vs full recompute: max abs logit difference {kv:.1e}")
    assert kv < 1e-5, "KV-cache decoding differs from full recomputation"
    logits = model(tokens)
    loss = kat_lm_torch.lm_loss(logits, targets)
    by_hand = -logits.log_softmax(-1).gather(2, targets[..., None]).mean()
    assert torch.allclose(loss, by_hand, rtol=1e-12), "LM loss definition mismatch"
    loss.backward()
    tensors = {n: f32(p) for n, p in model.named_parameters()}
    tensors |= {f"grad.{n}": f32(p.grad) for n, p in model.named_parameters()}
    tensors |= {"tokens": tokens.numpy().astype(np.int64),
                "targets": targets.numpy().astype(np.int64),
                "logits": f32(logits), "loss": f32(loss)}
    config_text = json.dumps(cfg.to_dict(), indent=2) + "\n"
    save(out, name, tensors, {"config": config_text})


# ---------------------------------------------------------------------------------------------


def save(out: str, name: str, tensors: dict, metadata: dict | None = None) -> None:
    """Saves, reloads and compares, then prints the file's contents."""
    path = os.path.join(out, name)
    safetensors_np.save(path, tensors, metadata)
    back, meta = safetensors_np.load(path)
    assert meta == (metadata or {}) and set(back) == set(tensors)
    for k, v in tensors.items():
        assert back[k].dtype == v.dtype and np.array_equal(back[k], v), f"{path}: {k} differs"
    print(f"wrote {path} ({os.path.getsize(path)} bytes): {len(tensors)} tensors")
    for k in sorted(back):
        print(f"  {k:45s} {str(list(back[k].shape)):16s} {back[k].dtype}")


def main() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", default=os.path.join(here, "..", "tests", "fixtures"))
    out = os.path.normpath(ap.parse_args().out)
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    write_rational(out)
    write_model(out, "kan", seed=2)
    write_model(out, "mlp", seed=2)
    write_checkpoint(out)
    # Its own generator (seed 4), written last: the fixtures above do not depend on it.
    write_model(out, "kan", seed=4, global_pool="avg", name="kat_avg_model.safetensors")
    # The language models, each with its own generator (seeds 5, 6), after everything above.
    write_lm(out, "kan", "rope", tied=True, seed=5, name="lm_kat_rope_tied.safetensors")
    write_lm(out, "mlp", "learned", tied=False, seed=6, name="lm_gpt_learned_untied.safetensors")


if __name__ == "__main__":
    main()
