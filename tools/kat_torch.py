"""Plain-PyTorch reference of kat's models: KAT (GR-KAN feed-forward) and ViT (GELU MLP).

Self-contained (no timm): the modules, parameter names and config.json layout match timm's
VisionTransformer / upstream KAT and kat's C++ engine, so a state dict moves between the three
unchanged. Used by the fixture generator, the checkpoint checks and the benchmark peer.

    model, cfg = load_checkpoint("runs/x/best")
    logits = model(normalize(pixels_uint8, model.config.mean, model.config.std))
"""

import json
import os
import tempfile
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

import safetensors_np

# Least-squares fits of F to each target on [-3, 3] (upstream init.json, kernel form of Q):
# name -> (a0..a5, b0..b3). See shared/reference/kat.md.
RATIONAL_INIT = {
    "identity": ([0.0, 1.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]),
    "swish": (
        [3.054879741161051e-07, 0.5000007853744493, 0.24999783422824703,
         0.05326628273219478, 0.005803034571292244, 0.0002751961022402342],
        [-4.111554955950634e-06, 0.10652899335007572, -1.2690007399796238e-06,
         0.0005502331264140556],
    ),
    "gelu_old": (
        [-0.0012423594497499122, 0.5080497063245629, 0.41586363182937475,
         0.13022718688035761, 0.024355900098993424, 0.00290283948155535],
        [-0.06675015696494944, 0.17927646217001553, 0.03746682605496631,
         1.6561610853276082e-10],
    ),
    "tanh": (
        [-1.0804622559204184e-08, 1.0003008043819048, -2.5878199375289335e-08,
         0.09632129918392647, 3.4775841628196104e-09, 0.0004255709234726337],
        [-0.0013027181209176277, 0.428349017422072, 1.4524304083061898e-09,
         0.010796648111337176],
    ),
    "sigmoid": (
        [0.4999992534599381, 0.25002157564685185, 0.14061924500301096,
         0.049420492431596394, 0.00876714851885483, 0.0006442412789159799],
        [2.1694506382753683e-09, 0.28122766100417684, 1.0123620714203357e-05,
         0.017531988049946],
    ),
}

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


# ---------------------------------------------------------------------------------------------
# GR-KAN rational


def _abs_sign_pos(t: torch.Tensor) -> torch.Tensor:
    """|t| with gradient sign(t), sign(0) = +1: the convention of kat and upstream's kernels.

    torch.abs would give gradient 0 at t == 0, which freezes identity-initialised denominators
    (b = 0) and differs from kat at x == 0. The sign factor is a constant to autograd.
    """
    return t * torch.where(t >= 0, 1.0, -1.0).to(t.dtype)


def rational(x: torch.Tensor, num: torch.Tensor, den: torch.Tensor, groups: int) -> torch.Tensor:
    """GR-KAN activation F(x) = P(x) / Q(x), channels last.

    x: [..., C]; num: [1, 6] (a0..a5, shared by all groups); den: [groups, 4] (b0..b3 per group).
    P(x) = sum_i a_i x^i,  Q(x) = 1 + sum_i |b_i| |x|^(i+1);
    channel c is in group c // (C // groups).
    Plain tensor ops, so autograd gives dx, dnum and dden.
    """
    channels = x.shape[-1]
    if channels % groups != 0:
        raise ValueError(f"rational: {channels} channels are not divisible by {groups} groups")
    a = num.reshape(6)
    b = _abs_sign_pos(den).repeat_interleave(channels // groups, dim=0)  # [C, 4]
    p = a[5]
    for i in (4, 3, 2, 1, 0):
        p = p * x + a[i]
    ax = _abs_sign_pos(x)
    q = b[:, 3]
    for i in (2, 1, 0):
        q = q * ax + b[:, i]
    q = q * ax + 1.0
    return p / q


class Rational(nn.Module):
    """GR-KAN activation with parameters weight_numerator [1, 6] and weight_denominator [groups, 4].

    mode names a row of RATIONAL_INIT; None leaves zeros for coefficients that will be loaded.
    """

    def __init__(self, groups: int, mode: str | None):
        super().__init__()
        self.groups = groups
        num, den = RATIONAL_INIT[mode] if mode is not None else ([0.0] * 6, [0.0] * 4)
        self.weight_numerator = nn.Parameter(torch.tensor([num]))
        self.weight_denominator = nn.Parameter(torch.tensor([den]).repeat(groups, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rational(x, self.weight_numerator, self.weight_denominator, self.groups)


# ---------------------------------------------------------------------------------------------
# Modules (timm names)


class KAN(nn.Module):
    """GR-KAN feed-forward: act1 (identity init) -> fc1 -> act2 (act_init) -> fc2."""

    def __init__(self, dim: int, hidden: int, groups: int, act_init: str | None):
        super().__init__()
        self.act1 = Rational(groups, "identity" if act_init is not None else None)
        self.fc1 = nn.Linear(dim, hidden)
        self.act2 = Rational(groups, act_init)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act2(self.fc1(self.act1(x))))


class Mlp(nn.Module):
    """ViT feed-forward: fc1 -> GELU (exact erf form) -> fc2."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Attention(nn.Module):
    """Multi-head self-attention, timm layout: qkv [3d, d] with bias, output proj [d, d]."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"embed_dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        qkv = self.qkv(x).reshape(B, T, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each [B, H, T, hd]
        attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(B, T, C))


class Block(nn.Module):
    """Pre-norm transformer block: x += attn(norm1(x)); x += mlp(norm2(x))."""

    def __init__(self, dim: int, num_heads: int, mlp: nn.Module, eps: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = mlp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    """Non-overlapping patches -> tokens: Conv2d(k = stride = patch) then [B, N, d]."""

    def __init__(self, patch_size: int, in_chans: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class VisionTransformer(nn.Module):
    """ViT / KAT classifier; names as timm's VisionTransformer.

    Input [B, in_chans, img, img] (already normalised) -> logits [B, num_classes].
    ffn: "kan" (KAT) or "mlp" (ViT). act_init None builds a KAT whose rationals will be loaded.
    global_pool, as timm's: "token" = norm (LayerNorm over every token) -> class token -> head;
    "avg" = no norm (Identity), mean of the patch tokens x[:, 1:] (the class token stays in the
    sequence but is left out of the mean) -> fc_norm (LayerNorm) -> head. So a "token" model has
    norm.weight/bias and no fc_norm.*, an "avg" model fc_norm.weight/bias and no norm.*.
    No dropout / drop-path: this is the eval-mode network.
    """

    def __init__(self, img_size: int, patch_size: int, in_chans: int, embed_dim: int, depth: int,
                 num_heads: int, mlp_ratio: float, num_classes: int, ffn: str = "kan",
                 rational_groups: int = 8, act_init: str | None = "swish",
                 layernorm_eps: float = 1e-6, global_pool: str = "token"):
        super().__init__()
        if global_pool not in ("token", "avg"):
            raise ValueError(f'global_pool must be "token" or "avg", not "{global_pool}"')
        self.global_pool = global_pool
        if img_size % patch_size != 0:
            raise ValueError(f"img_size {img_size} is not a multiple of patch_size {patch_size}")
        if ffn not in ("kan", "mlp"):
            raise ValueError(f'ffn must be "kan" or "mlp", not "{ffn}"')
        hidden = int(embed_dim * mlp_ratio)
        num_patches = (img_size // patch_size) ** 2
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + num_patches, embed_dim))

        def ffn_module() -> nn.Module:
            if ffn == "mlp":
                return Mlp(embed_dim, hidden)
            return KAN(embed_dim, hidden, rational_groups, act_init)

        self.blocks = nn.Sequential(
            *[Block(embed_dim, num_heads, ffn_module(), layernorm_eps) for _ in range(depth)]
        )
        use_fc_norm = global_pool == "avg"  # timm: fc_norm=None means global_pool == "avg"
        self.norm = nn.Identity() if use_fc_norm else nn.LayerNorm(embed_dim, eps=layernorm_eps)
        self.fc_norm = nn.LayerNorm(embed_dim, eps=layernorm_eps) if use_fc_norm else nn.Identity()
        self.head = nn.Linear(embed_dim, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        """timm-like: trunc_normal(0.02) for linears and pos_embed, zero biases, tiny cls_token."""
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        x = self.norm(self.blocks(x))
        x = x[:, 1:].mean(dim=1) if self.global_pool == "avg" else x[:, 0]
        return self.head(self.fc_norm(x))


# ---------------------------------------------------------------------------------------------
# config.json (the layout kat's C++ engine reads and writes: see include/kat/config.h)


@dataclass
class ModelConfig:
    """Everything that defines a model; defaults are the Fashion-MNIST model kat_fmnist."""

    architecture: str = "kat_fmnist"
    img_size: int = 28
    patch_size: int = 4
    in_chans: int = 1
    embed_dim: int = 64
    depth: int = 6
    num_heads: int = 4
    mlp_ratio: float = 4.0
    num_classes: int = 10
    rational_groups: int = 8
    ffn: str = "kan"
    act_init: str = "swish"
    mean: list[float] = field(default_factory=lambda: [0.2860])
    std: list[float] = field(default_factory=lambda: [0.3530])
    layernorm_eps: float = 1e-6
    global_pool: str = "token"  # "token" (class token, final norm) or "avg" (patch mean, fc_norm)
    drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    class_names: list[str] = field(default_factory=list)


def named_config(name: str) -> ModelConfig:
    """kat_fmnist / vit_fmnist and upstream's {kat,vit}_{tiny,small,base}_patch16_224 names
    (KAT also with _swish_ and _gelu_ inserted)."""
    if name in ("kat_fmnist", "vit_fmnist"):
        return ModelConfig(architecture=name, ffn="kan" if name[0] == "k" else "mlp")
    for size, dim in (("tiny", 192), ("small", 384), ("base", 768)):
        variants = {
            f"vit_{size}_patch16_224": ("mlp", "swish"),
            f"kat_{size}_patch16_224": ("kan", "swish"),
            f"kat_{size}_swish_patch16_224": ("kan", "swish"),
            f"kat_{size}_gelu_patch16_224": ("kan", "gelu_old"),
        }
        if name in variants:
            ffn, act = variants[name]
            return ModelConfig(architecture=name, img_size=224, patch_size=16, in_chans=3,
                               embed_dim=dim, depth=12, num_heads=dim // 64, mlp_ratio=4.0,
                               num_classes=1000, rational_groups=8, ffn=ffn, act_init=act,
                               mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD))
    known = ["kat_fmnist", "vit_fmnist"] + [f"{p}_{s}_patch16_224" for p in ("kat", "vit")
                                            for s in ("tiny", "small", "base")]
    raise ValueError(f"unknown model config '{name}' (known: {', '.join(known)}, and the "
                     "kat_*_swish_* / kat_*_gelu_* aliases)")


def _check_keys(d: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(d) - allowed)
    if unknown:
        raise ValueError(f"config.json: unknown key(s) {unknown} in {where}")


def config_from_dict(cfg: dict) -> ModelConfig:
    """Parses a kat config.json dict with the rules of kat's C++ reader (src/io/config.cpp)."""
    _check_keys(cfg, {"architecture", "num_classes", "num_features", "global_pool", "model_args",
                      "pretrained_cfg", "kat"}, "the config")
    arch = cfg["architecture"]
    try:
        c = named_config(arch)
    except ValueError:
        if "model_args" not in cfg:
            raise ValueError(f"config.json: no 'model_args' and '{arch}' is not a known "
                             "architecture name") from None
        c = ModelConfig()
    c.architecture = arch
    if "model_args" in cfg:
        m = cfg["model_args"]
        _check_keys(m, {"img_size", "patch_size", "in_chans", "embed_dim", "depth", "num_heads",
                        "mlp_ratio", "num_classes", "rational_groups", "act_init", "qkv_bias",
                        "drop_rate", "drop_path_rate", "global_pool"}, "model_args")
        if m.get("qkv_bias", True) is not True:
            raise ValueError("config.json: qkv_bias=false is not supported")
        for key in ("img_size", "patch_size", "in_chans", "embed_dim", "depth", "num_heads",
                    "num_classes", "rational_groups"):
            if key in m:
                setattr(c, key, int(m[key]))
        for key in ("mlp_ratio", "drop_rate", "drop_path_rate"):
            if key in m:
                setattr(c, key, float(m[key]))
        c.act_init = m.get("act_init", c.act_init)
        c.global_pool = m.get("global_pool", c.global_pool)
        if "pretrained_cfg" not in cfg:
            c.mean, c.std = [0.5] * c.in_chans, [0.5] * c.in_chans
    if "num_classes" in cfg:
        c.num_classes = int(cfg["num_classes"])
    p = cfg.get("pretrained_cfg", {})
    c.mean = [float(v) for v in p.get("mean", c.mean)]
    c.std = [float(v) for v in p.get("std", c.std)]
    if "input_size" in p and list(p["input_size"]) != [c.in_chans, c.img_size, c.img_size]:
        raise ValueError("config.json: pretrained_cfg.input_size does not match model_args")
    if "kat" in cfg:
        k = cfg["kat"]
        _check_keys(k, {"ffn", "act_init", "class_names", "layernorm_eps"}, "kat")
        c.ffn = k.get("ffn", c.ffn)
        c.act_init = k.get("act_init", c.act_init)
        c.class_names = list(k.get("class_names", c.class_names))
        c.layernorm_eps = float(k.get("layernorm_eps", c.layernorm_eps))
    elif arch.startswith("kat") or arch.startswith("vit"):
        c.ffn = "kan" if arch.startswith("kat") else "mlp"
    else:
        raise ValueError(f"config.json: cannot tell KAT from ViT: architecture '{arch}' starts "
                         "with neither kat_ nor vit_ and there is no kat.ffn")
    if c.global_pool not in ("token", "avg"):
        raise ValueError(f'config.json: model_args.global_pool must be "token" or "avg", not '
                         f'"{c.global_pool}"')
    top = cfg.get("global_pool")
    if top in ("token", "avg") and top != c.global_pool:
        raise ValueError(f'config.json: global_pool "{top}" contradicts model_args.global_pool '
                         f'"{c.global_pool}" (absent means "token")')
    if c.ffn not in ("kan", "mlp"):
        raise ValueError(f'config.json: kat.ffn must be "kan" or "mlp", not "{c.ffn}"')
    if len(c.mean) != c.in_chans or len(c.std) != c.in_chans:
        raise ValueError(f"config.json: mean and std need one value per input channel "
                         f"({c.in_chans})")
    return c


def config_to_dict(c: ModelConfig) -> dict:
    """The config.json dict kat writes (same keys and layout as kat's config_to_json)."""
    args = {"img_size": c.img_size, "patch_size": c.patch_size, "in_chans": c.in_chans,
            "embed_dim": c.embed_dim, "depth": c.depth, "num_heads": c.num_heads,
            "mlp_ratio": float(c.mlp_ratio), "num_classes": c.num_classes}
    if c.ffn == "kan":
        args["rational_groups"] = c.rational_groups
    if c.global_pool != "token":
        args["global_pool"] = c.global_pool
    if c.drop_rate > 0:
        args["drop_rate"] = c.drop_rate
    if c.drop_path_rate > 0:
        args["drop_path_rate"] = c.drop_path_rate
    k: dict = {"ffn": c.ffn}
    if c.ffn == "kan":
        k["act_init"] = c.act_init
    if c.class_names:
        k["class_names"] = c.class_names
    if c.layernorm_eps != 1e-6:
        k["layernorm_eps"] = c.layernorm_eps
    return {
        "architecture": c.architecture,
        "num_classes": c.num_classes,
        "num_features": c.embed_dim,
        "global_pool": c.global_pool,
        "model_args": args,
        "pretrained_cfg": {"input_size": [c.in_chans, c.img_size, c.img_size],
                           "mean": c.mean, "std": c.std, "num_classes": c.num_classes},
        "kat": k,
    }


def model_from_config(cfg: dict | ModelConfig, weights_follow: bool = False) -> VisionTransformer:
    """Builds the model a config.json dict (or ModelConfig) describes, freshly initialised.

    weights_follow: the caller loads every tensor next, so an act_init that only kat's fitter knows
    (e.g. "gelu") is accepted; the rationals then start as zeros until loaded.
    """
    c = cfg if isinstance(cfg, ModelConfig) else config_from_dict(cfg)
    act = c.act_init
    if c.ffn == "kan" and act not in RATIONAL_INIT:
        if not weights_follow:
            raise ValueError(f"act_init '{act}' has no tabled coefficients here (known: "
                             f"{', '.join(RATIONAL_INIT)}); kat fits it in C++")
        act = None
    model = VisionTransformer(c.img_size, c.patch_size, c.in_chans, c.embed_dim, c.depth,
                              c.num_heads, c.mlp_ratio, c.num_classes, ffn=c.ffn,
                              rational_groups=c.rational_groups, act_init=act,
                              layernorm_eps=c.layernorm_eps, global_pool=c.global_pool)
    model.config = c
    return model


# ---------------------------------------------------------------------------------------------
# Checkpoint directories: DIR/model.safetensors + DIR/config.json


def state_dict_numpy(model: nn.Module) -> dict:
    """name -> float32 numpy array, for safetensors_np.save."""
    return {k: v.detach().to(torch.float32).cpu().numpy() for k, v in model.state_dict().items()}


def load_state_numpy(model: nn.Module, tensors: dict, origin: str) -> None:
    """Loads name -> array into `model` strictly: a missing, unexpected or misshapen tensor is an
    error naming it."""
    own = model.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    if missing or unexpected:
        raise ValueError(f"{origin}: tensors do not match the model: missing {missing}, "
                         f"unexpected {unexpected}")
    for name, value in own.items():
        if tuple(tensors[name].shape) != tuple(value.shape):
            raise ValueError(f"{origin}: tensor '{name}' has shape {list(tensors[name].shape)}, "
                             f"the model expects {list(value.shape)}")
    model.load_state_dict({k: torch.from_numpy(v).to(own[k].dtype) for k, v in tensors.items()})


def load_checkpoint(path: str) -> tuple[VisionTransformer, dict]:
    """Reads DIR/config.json and DIR/model.safetensors (path may also be the .safetensors file).

    Returns (model in eval mode, float32; the config.json dict as written in the file).
    """
    directory = os.path.dirname(path) if path.endswith(".safetensors") else path
    with open(os.path.join(directory, "config.json")) as f:
        cfg = json.load(f)
    model = model_from_config(cfg, weights_follow=True)
    weights = os.path.join(directory, "model.safetensors")
    tensors, _ = safetensors_np.load(weights)
    load_state_numpy(model, tensors, weights)
    return model.eval(), cfg


def save_checkpoint(directory: str, model: VisionTransformer, cfg: dict | ModelConfig) -> None:
    """Writes DIR/model.safetensors (float32, metadata {"format": "pt"}) and DIR/config.json in
    kat's layout, each atomically."""
    c = cfg if isinstance(cfg, ModelConfig) else config_from_dict(cfg)
    os.makedirs(directory, exist_ok=True)
    safetensors_np.save(os.path.join(directory, "model.safetensors"), state_dict_numpy(model),
                        metadata={"format": "pt"})
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(config_to_dict(c), indent=2) + "\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, os.path.join(directory, "config.json"))


def normalize(pixels: torch.Tensor, mean: list[float], std: list[float]) -> torch.Tensor:
    """uint8 pixels [B, C, H, W] -> float32 model input (p / 255 - mean[c]) / std[c]."""
    m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return (pixels.to(torch.float32) / 255.0 - m) / s
