"""Plain-PyTorch reference of kat's byte-level language models (GPT-style, decoder-only).

The feed-forward is a GR-KAN (ffn "kan": act1 -> c_fc -> act2 -> c_proj, the rational of
kat_torch.rational) or GPT's GELU MLP (ffn "mlp"); positions are learned (wpe) or rotary (RoPE,
rotate-half). Tensor names, the [out, in] linear layout and config.json are those of
docs/formats.md, "Language models", so a state dict moves between this file and kat unchanged.
Used by the fixture generator and the benchmark peer.

    model, cfg = load_checkpoint("runs/lm/best")
    logits = model(tokens)                              # tokens [B, T] int64 -> [B, T, 257]
    out = generate_greedy(model, [72, 105], n_new=20)   # KV-cached greedy decoding

`python3 tools/kat_lm_torch.py` runs a self-test (config and checkpoint round trips, KV-cache
decoding against full recomputation in float64).
"""

import json
import math
import os
import tempfile
import time
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

import kat_torch
import safetensors_np

END_OF_TEXT = 256  # the token that joins documents; bytes are 0..255
_KAT_KEYS = ("ffn", "rational_groups", "act_init", "positions", "rope_theta")
_TOP_KEYS = ("architecture", "model_type", "vocab_size", "n_positions", "n_embd", "n_layer",
             "n_head", "n_inner", "layer_norm_epsilon", "tie_word_embeddings", "kat")


# ---------------------------------------------------------------------------------------------
# config.json


@dataclass
class LmConfig:
    """Everything that defines a language model; defaults are the spec's kat_lm."""

    architecture: str = "kat_lm"
    model_type: str = "kat-lm"
    vocab_size: int = 257
    n_positions: int = 256
    n_embd: int = 256
    n_layer: int = 4
    n_head: int = 4
    n_inner: int = 1024
    layer_norm_epsilon: float = 1e-5
    tie_word_embeddings: bool = True
    ffn: str = "kan"  # "kan" (GR-KAN) or "mlp" (exact-erf GELU)
    rational_groups: int = 8
    act_init: str = "swish"  # act2's initial function; act1 starts as the identity
    positions: str = "rope"  # "rope" or "learned" (wpe)
    rope_theta: float = 10000.0

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @classmethod
    def from_dict(cls, d: dict) -> "LmConfig":
        """Parses a config.json dict; unknown keys and impossible sizes are errors."""
        kat_torch._check_keys(d, set(_TOP_KEYS), "the config")
        k = d.get("kat", {})
        kat_torch._check_keys(k, set(_KAT_KEYS), "kat")
        c = cls()
        for key in ("architecture", "model_type"):
            setattr(c, key, str(d.get(key, getattr(c, key))))
        for key in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head"):
            setattr(c, key, int(d.get(key, getattr(c, key))))
        # Hugging Face writes "n_inner": null for the default 4 * n_embd.
        c.n_inner = int(d["n_inner"]) if d.get("n_inner") is not None else 4 * c.n_embd
        c.layer_norm_epsilon = float(d.get("layer_norm_epsilon", c.layer_norm_epsilon))
        tie = d.get("tie_word_embeddings", c.tie_word_embeddings)
        if not isinstance(tie, bool):
            raise ValueError("config.json: tie_word_embeddings must be true or false")
        c.tie_word_embeddings = tie
        c.ffn = str(k.get("ffn", c.ffn))
        c.rational_groups = int(k.get("rational_groups", c.rational_groups))
        c.act_init = str(k.get("act_init", c.act_init))
        c.positions = str(k.get("positions", c.positions))
        c.rope_theta = float(k.get("rope_theta", c.rope_theta))
        c.validate()
        return c

    def to_dict(self) -> dict:
        """The config.json dict in kat's layout (docs/formats.md): rational_groups and act_init
        only for ffn "kan", rope_theta only for positions "rope"."""
        k: dict = {"ffn": self.ffn, "positions": self.positions}
        if self.ffn == "kan":
            k |= {"rational_groups": self.rational_groups, "act_init": self.act_init}
        if self.positions == "rope":
            k["rope_theta"] = float(self.rope_theta)
        return {
            "architecture": self.architecture,
            "model_type": self.model_type,
            "vocab_size": self.vocab_size,
            "n_positions": self.n_positions,
            "n_embd": self.n_embd,
            "n_layer": self.n_layer,
            "n_head": self.n_head,
            "n_inner": self.n_inner,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "tie_word_embeddings": self.tie_word_embeddings,
            "kat": k,
        }

    def validate(self) -> None:
        """Raises ValueError naming the first setting the model cannot be built with."""
        if self.ffn not in ("kan", "mlp"):
            raise ValueError(f'config.json: kat.ffn must be "kan" or "mlp", not "{self.ffn}"')
        if self.positions not in ("rope", "learned"):
            raise ValueError(f'config.json: kat.positions must be "rope" or "learned", not '
                             f'"{self.positions}"')
        for key in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "n_inner"):
            if getattr(self, key) < 1:
                raise ValueError(f"config.json: {key} must be positive")
        if self.n_embd % self.n_head != 0:
            raise ValueError(f"config.json: n_embd {self.n_embd} is not divisible by n_head "
                             f"{self.n_head}")
        if self.positions == "rope" and self.head_dim % 2 != 0:
            raise ValueError(f"config.json: RoPE needs an even head size, not {self.head_dim}")
        if self.ffn == "kan" and (self.rational_groups < 1
                                  or self.n_embd % self.rational_groups != 0
                                  or self.n_inner % self.rational_groups != 0):
            raise ValueError(f"config.json: rational_groups {self.rational_groups} must divide "
                             f"n_embd {self.n_embd} and n_inner {self.n_inner}")


# ---------------------------------------------------------------------------------------------
# Modules (GPT-2 names, nn.Linear [out, in] weights)


def rope_tables(start: int, length: int, head_dim: int, theta: float,
                dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin [length, head_dim / 2] of angle t * theta^(-2i / head_dim) for positions
    t = start .. start + length - 1; computed in float64, then cast to dtype."""
    i = torch.arange(head_dim // 2, dtype=torch.float64)
    inv_freq = theta ** (-2.0 * i / head_dim)
    t = torch.arange(start, start + length, dtype=torch.float64)
    angle = t[:, None] * inv_freq[None, :]
    return angle.cos().to(dtype), angle.sin().to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate-half RoPE on x [B, H, T, hd]: (x_i, x_{i+hd/2}) ->
    (x_i cos - x_{i+hd/2} sin, x_{i+hd/2} cos + x_i sin) for i < hd/2."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


class KVCache:
    """Keys (RoPE already applied) and values of every layer for positions 0 .. length - 1,
    preallocated to max_len positions: [batch, n_head, max_len, head_dim] per layer."""

    def __init__(self, cfg: LmConfig, batch: int, dtype: torch.dtype, max_len: int | None = None):
        shape = (batch, cfg.n_head, max_len or cfg.n_positions, cfg.head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype) for _ in range(cfg.n_layer)]
        self.values = [torch.zeros(shape, dtype=dtype) for _ in range(cfg.n_layer)]
        self.length = 0

    @property
    def capacity(self) -> int:
        return self.keys[0].shape[2]


class CausalSelfAttention(nn.Module):
    """Causal multi-head attention: c_attn [3D, D] (q, k, v stacked, heads contiguous), optional
    RoPE on q and k, softmax(q k^T / sqrt(hd)) with future keys masked, c_proj [D, D]."""

    def __init__(self, cfg: LmConfig):
        super().__init__()
        self.n_head = cfg.n_head
        self.head_dim = cfg.head_dim
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None,
                past: tuple[torch.Tensor, torch.Tensor] | None = None,
                start: int = 0) -> torch.Tensor:
        """x [B, T, D] at positions start .. start + T - 1. past: this layer's (keys, values)
        cache buffers; the new keys and values are written at start and attention reads
        positions 0 .. start + T - 1 from them."""
        B, T, C = x.shape
        qkv = self.c_attn(x).reshape(B, T, 3, self.n_head, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each [B, H, T, hd]
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        if past is not None:
            past[0][:, :, start:start + T] = k
            past[1][:, :, start:start + T] = v
            k, v = past[0][:, :, :start + T], past[1][:, :, :start + T]
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(self.head_dim))
        if T > 1:  # query i (position start + i) sees keys 0 .. start + i
            future = (torch.arange(start + T)[None, :] > (start + torch.arange(T))[:, None])
            att = att.masked_fill(future, float("-inf"))
        y = att.softmax(dim=-1) @ v
        return self.c_proj(y.transpose(1, 2).reshape(B, T, C))


class KanMlp(nn.Module):
    """GR-KAN feed-forward: c_proj(act2(c_fc(act1(x)))); act1 starts as the identity, act2 as
    act_init (None: zeros, for coefficients that will be loaded)."""

    def __init__(self, dim: int, hidden: int, groups: int, act_init: str | None):
        super().__init__()
        self.act1 = kat_torch.Rational(groups, "identity" if act_init is not None else None)
        self.c_fc = nn.Linear(dim, hidden)
        self.act2 = kat_torch.Rational(groups, act_init)
        self.c_proj = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.act2(self.c_fc(self.act1(x))))


class GeluMlp(nn.Module):
    """GPT feed-forward: c_proj(gelu(c_fc(x))) with the exact erf GELU."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.c_fc = nn.Linear(dim, hidden)
        self.c_proj = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(F.gelu(self.c_fc(x)))


class LmBlock(nn.Module):
    """Pre-norm block: x += attn(ln_1(x)); x += mlp(ln_2(x))."""

    def __init__(self, cfg: LmConfig, act_init: str | None):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_epsilon)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_epsilon)
        if cfg.ffn == "kan":
            self.mlp = KanMlp(cfg.n_embd, cfg.n_inner, cfg.rational_groups, act_init)
        else:
            self.mlp = GeluMlp(cfg.n_embd, cfg.n_inner)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None,
                past: tuple[torch.Tensor, torch.Tensor] | None = None,
                start: int = 0) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), rope, past, start)
        return x + self.mlp(self.ln_2(x))


class CausalLM(nn.Module):
    """Byte-level decoder-only LM: tokens [B, T] int64 -> logits [B, T, vocab_size].

    logits = ln_f(h) @ W^T with W = wte.weight when tie_word_embeddings, else lm_head.weight
    (no bias). No dropout: the network is the same in train and eval mode.
    weights_follow: every tensor is loaded next, so an act_init only kat's fitter knows (e.g.
    "gelu") is accepted; the rationals are zeros until loaded.
    """

    def __init__(self, cfg: LmConfig, weights_follow: bool = False):
        super().__init__()
        cfg.validate()
        self.config = cfg
        act: str | None = cfg.act_init
        if cfg.ffn == "kan" and act not in kat_torch.RATIONAL_INIT:
            if not weights_follow:
                raise ValueError(f"act_init '{act}' has no tabled coefficients here (known: "
                                 f"{', '.join(kat_torch.RATIONAL_INIT)}); kat fits it in C++")
            act = None
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.n_positions, cfg.n_embd) if cfg.positions == "learned" else None
        self.h = nn.ModuleList([LmBlock(cfg, act) for _ in range(cfg.n_layer)])
        self.ln_f = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_epsilon)
        self.lm_head = (None if cfg.tie_word_embeddings
                        else nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False))
        self._init_weights()

    def _init_weights(self) -> None:
        """GPT-2-like: normal(0.02) embeddings and linears, c_proj (into the residual stream)
        scaled by 1/sqrt(2 n_layer), zero biases. (kat's C++ init also scales a KAN's c_fc and
        c_proj to preserve variance; fixtures and benchmarks do not depend on the init.)"""
        residual = 1.0 / math.sqrt(2.0 * self.config.n_layer)
        for name, m in self.named_modules():
            if isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, std=0.02)
            elif isinstance(m, nn.Linear):
                std = 0.02 * residual if name.endswith("c_proj") else 0.02
                nn.init.normal_(m.weight, std=std)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def output_weight(self) -> torch.Tensor:
        return self.wte.weight if self.lm_head is None else self.lm_head.weight

    def forward(self, tokens: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """tokens [B, T] at positions cache.length .. cache.length + T - 1 (0 .. T - 1 without a
        cache); with a cache, their keys and values are appended to it."""
        B, T = tokens.shape
        start = cache.length if cache is not None else 0
        limit = cache.capacity if cache is not None else self.config.n_positions
        if start + T > min(limit, self.config.n_positions):
            raise ValueError(f"positions up to {start + T} exceed n_positions "
                             f"{self.config.n_positions} or the cache")
        x = self.wte(tokens)
        dtype = x.dtype
        if self.wpe is not None:
            x = x + self.wpe(torch.arange(start, start + T))[None]
        rope = (rope_tables(start, T, self.config.head_dim, self.config.rope_theta, dtype)
                if self.config.positions == "rope" else None)
        for i, block in enumerate(self.h):
            past = (cache.keys[i], cache.values[i]) if cache is not None else None
            x = block(x, rope, past, start)
        if cache is not None:
            cache.length = start + T
        return F.linear(self.ln_f(x), self.output_weight())


def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over all B * T positions; targets [B, T] are the next tokens."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def model_from_config(cfg: dict | LmConfig, weights_follow: bool = False) -> CausalLM:
    """Builds the model a config.json dict (or LmConfig) describes, freshly initialised
    (weights_follow: see CausalLM)."""
    c = cfg if isinstance(cfg, LmConfig) else LmConfig.from_dict(cfg)
    return CausalLM(c, weights_follow)


# ---------------------------------------------------------------------------------------------
# Greedy generation with the KV cache


class Generation(NamedTuple):
    tokens: torch.Tensor  # [n_new] int64, the generated tokens
    logits: torch.Tensor  # [n_new + 1, vocab]: after the prompt and after each generated token
    prefill_s: float  # seconds to run the prompt (its last logits pick the first new token)
    decode_s: float  # seconds for the n_new single-token steps that pick and feed each new token


@torch.no_grad()
def generate_greedy(model: CausalLM, prompt_tokens, n_new: int) -> Generation:
    """Greedy decoding (argmax, first index on ties) of n_new tokens after prompt_tokens (a
    sequence of ints or a 1-D tensor, at least one token).

    The prompt runs once through the model, filling a KVCache; then each generated token is
    picked and fed back as one single-token forward at its absolute position, reading the cached
    keys and values, so the cache ends holding all len(prompt) + n_new tokens (which must not
    exceed n_positions) and logits[-1] predicts the token after them.
    """
    prompt = torch.as_tensor(prompt_tokens, dtype=torch.int64).reshape(1, -1)
    if prompt.shape[1] < 1 or n_new < 1:
        raise ValueError("generate_greedy needs a prompt of at least one token and n_new >= 1")
    if prompt.shape[1] + n_new > model.config.n_positions:
        raise ValueError(f"prompt {prompt.shape[1]} + {n_new} new tokens exceed n_positions "
                         f"{model.config.n_positions}")
    cache = KVCache(model.config, 1, model.wte.weight.dtype)
    t0 = time.perf_counter()
    logits = model(prompt, cache)[0, -1]
    t1 = time.perf_counter()
    picked, rows = [], [logits]
    for _ in range(n_new):
        picked.append(logits.argmax())
        logits = model(picked[-1].view(1, 1), cache)[0, -1]
        rows.append(logits)
    t2 = time.perf_counter()
    return Generation(torch.stack(picked), torch.stack(rows), t1 - t0, t2 - t1)


@torch.no_grad()
def check_kv_cache(model: CausalLM, prompt_tokens, n_new: int) -> float:
    """Max abs difference between the logits of KV-cached greedy decoding and a full forward
    over the whole sequence; also asserts that both pick the same tokens."""
    prompt = torch.as_tensor(prompt_tokens, dtype=torch.int64).reshape(-1)
    gen = generate_greedy(model, prompt, n_new)
    sequence = torch.cat([prompt, gen.tokens])
    full = model(sequence[None])[0, prompt.numel() - 1:]
    assert torch.equal(full[:-1].argmax(-1), gen.tokens), "KV-cache decoding picked other tokens"
    return float((full - gen.logits).abs().max())


# ---------------------------------------------------------------------------------------------
# Checkpoint directories: DIR/model.safetensors + DIR/config.json


def load_checkpoint(path: str) -> tuple[CausalLM, dict]:
    """Reads DIR/config.json and DIR/model.safetensors (path may also be the .safetensors file),
    strictly: a missing, unexpected or misshapen tensor is an error naming it.

    Returns (model in eval mode, float32; the config.json dict as written in the file).
    """
    directory = os.path.dirname(path) if path.endswith(".safetensors") else path
    with open(os.path.join(directory, "config.json")) as f:
        cfg = json.load(f)
    model = model_from_config(cfg, weights_follow=True)
    weights = os.path.join(directory, "model.safetensors")
    tensors, _ = safetensors_np.load(weights)
    kat_torch.load_state_numpy(model, tensors, weights)
    return model.eval(), cfg


def save_checkpoint(directory: str, model: CausalLM, cfg: dict | LmConfig) -> None:
    """Writes DIR/model.safetensors (float32, metadata {"format": "pt"}) and DIR/config.json,
    each atomically."""
    c = cfg if isinstance(cfg, LmConfig) else LmConfig.from_dict(cfg)
    os.makedirs(directory, exist_ok=True)
    safetensors_np.save(os.path.join(directory, "model.safetensors"),
                        kat_torch.state_dict_numpy(model), metadata={"format": "pt"})
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(c.to_dict(), indent=2) + "\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, os.path.join(directory, "config.json"))


# ---------------------------------------------------------------------------------------------
# Self-test


def tiny_config(ffn: str, positions: str, tied: bool) -> LmConfig:
    """The fixtures' size: vocab 257, 16 positions, D 16, 2 layers, 2 heads, H 32, 4 groups."""
    return LmConfig(architecture="kat_lm" if ffn == "kan" else "gpt_lm", n_positions=16,
                    n_embd=16, n_layer=2, n_head=2, n_inner=32, rational_groups=4, ffn=ffn,
                    positions=positions, tie_word_embeddings=tied)


def _self_test() -> None:
    gen = torch.Generator().manual_seed(0)
    for cfg in (tiny_config("kan", "rope", True), tiny_config("mlp", "learned", False)):
        text = json.dumps(cfg.to_dict())
        assert LmConfig.from_dict(json.loads(text)).to_dict() == cfg.to_dict()
        model = model_from_config(cfg)
        with torch.no_grad():  # larger weights than the init, so the logits differ clearly
            for name, p in model.named_parameters():
                if name.endswith("weight") and p.ndim == 2:
                    p.copy_(0.3 * torch.randn(p.shape, generator=gen))
        model = model.double().eval()
        tokens = torch.randint(0, cfg.vocab_size, (2, 9), generator=gen)
        with torch.no_grad():
            full = model(tokens)
            cache = KVCache(cfg, 2, torch.float64)
            chunks = [model(tokens[:, a:b], cache) for a, b in ((0, 4), (4, 5), (5, 9))]
        chunked = float((torch.cat(chunks, dim=1) - full).abs().max())
        kv = check_kv_cache(model, tokens[0, :3], cfg.n_positions - 3)
        kv1 = check_kv_cache(model, tokens[1, :1], cfg.n_positions - 1)
        print(f"{cfg.architecture} ({cfg.ffn}, {cfg.positions}, tied {cfg.tie_word_embeddings}): "
              f"chunked prefill {chunked:.1e}, KV-cache greedy vs full recompute {kv:.1e} "
              f"(prompt 3) {kv1:.1e} (prompt 1), float64")
        assert max(chunked, kv, kv1) < 1e-5
        with tempfile.TemporaryDirectory() as d:
            save_checkpoint(d, model.float(), cfg)
            loaded, raw = load_checkpoint(d)
            assert raw == cfg.to_dict()
            assert all(torch.equal(a, b) for a, b in
                       zip(model.state_dict().values(), loaded.state_dict().values()))
            names = set(loaded.state_dict())
            assert ("lm_head.weight" in names) != cfg.tie_word_embeddings
            assert ("wpe.weight" in names) == (cfg.positions == "learned")
    print("self-test passed")


if __name__ == "__main__":
    _self_test()
