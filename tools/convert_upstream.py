"""Converts between upstream KAT / timm ViT .pth checkpoints and kat's checkpoint directories.

    /usr/bin/python3 tools/convert_upstream.py SRC.pth OUT_DIR [--arch NAME] [--heads H] [--key K]
    /usr/bin/python3 tools/convert_upstream.py --to-pth DIR OUT.pth

.pth -> DIR: SRC.pth is a state dict, possibly under "model", "state_dict", "model_ema" or
"state_dict_ema" (the first present, or --key), possibly with "module." prefixes (DDP, EMA). The
model is inferred from tensor shapes: embed_dim, patch_size and in_chans from
patch_embed.proj.weight, depth from the blocks, img_size from pos_embed, num_classes from
head.weight, mlp_ratio from fc1, KAT vs ViT and rational_groups from mlp.act1.weight_denominator,
global_pool "avg" when there are fc_norm.* tensors and no norm.* (timm's layout), else "token".
num_heads cannot be seen in the weights: it comes from --heads or from the architecture name
(given by --arch, or inferred for the upstream {kat,vit}_{tiny,small,base}_patch16_224 shapes).
Writes DIR/model.safetensors (timm names, float32) and DIR/config.json (mean/std of the named
architecture, else ImageNet's for 3 channels and 0.5 otherwise). Any tensor kat's model does not
have is refused, by name.

DIR -> .pth: writes a plain state dict (timm names) that upstream's KAT model (or timm's
VisionTransformer for a ViT) loads with load_state_dict.
"""

import argparse
import os
import re
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kat_torch  # noqa: E402

WRAPPER_KEYS = ("model", "state_dict", "model_ema", "state_dict_ema")


def extract_state_dict(obj, key: str | None) -> dict[str, torch.Tensor]:
    """The tensors of a loaded .pth, unwrapped from a training checkpoint and "module."-free."""
    if key is not None:
        if not isinstance(obj, dict) or key not in obj:
            raise ValueError(f"the checkpoint has no key '{key}'")
        obj = obj[key]
    elif isinstance(obj, dict) and not all(torch.is_tensor(v) for v in obj.values()):
        found = [k for k in WRAPPER_KEYS if isinstance(obj.get(k), dict)]
        if not found:
            raise ValueError(f"no state dict found: top-level keys are {sorted(obj)[:20]}; "
                             f"expected tensors or one of {WRAPPER_KEYS} (or pass --key)")
        print(f"using the state dict under '{found[0]}'")
        obj = obj[found[0]]
    if not isinstance(obj, dict):
        raise ValueError(f"expected a state dict, found {type(obj).__name__}")
    out = {}
    for name, value in obj.items():
        while name.startswith("module."):
            name = name[len("module."):]
        if not torch.is_tensor(value):
            raise ValueError(f"entry '{name}' is not a tensor ({type(value).__name__})")
        out[name] = value.detach().to(torch.float32).cpu()
    return out


def upstream_name(ffn: str, c: kat_torch.ModelConfig) -> str | None:
    """The upstream architecture whose shapes these are, or None."""
    sizes = {192: "tiny", 384: "small", 768: "base"}
    if (c.embed_dim in sizes and c.depth == 12 and c.patch_size == 16 and c.img_size == 224
            and c.mlp_ratio == 4.0):
        return f"{'kat' if ffn == 'kan' else 'vit'}_{sizes[c.embed_dim]}_patch16_224"
    return None


def infer_config(sd: dict[str, torch.Tensor], arch: str | None,
                 heads: int | None) -> kat_torch.ModelConfig:
    """A ModelConfig for the state dict; errors say which tensor or flag is missing."""
    for name in ("patch_embed.proj.weight", "pos_embed", "cls_token", "head.weight",
                 "blocks.0.mlp.fc1.weight"):
        if name not in sd:
            raise ValueError(f"'{name}' is missing: not a timm ViT / KAT state dict")
    d, in_chans, patch, _ = sd["patch_embed.proj.weight"].shape
    depth = 1 + max(int(m.group(1)) for k in sd if (m := re.match(r"blocks\.(\d+)\.", k)))
    tokens = sd["pos_embed"].shape[1]
    grid = round((tokens - 1) ** 0.5)
    if grid * grid != tokens - 1:
        raise ValueError(f"pos_embed has {tokens} positions: not 1 + a square number of patches")
    kan = "blocks.0.mlp.act1.weight_denominator" in sd
    c = kat_torch.ModelConfig(
        img_size=grid * patch, patch_size=patch, in_chans=in_chans, embed_dim=d, depth=depth,
        mlp_ratio=sd["blocks.0.mlp.fc1.weight"].shape[0] / d,
        num_classes=sd["head.weight"].shape[0], ffn="kan" if kan else "mlp",
        rational_groups=sd["blocks.0.mlp.act1.weight_denominator"].shape[0] if kan else 8,
        mean=list(kat_torch.IMAGENET_MEAN) if in_chans == 3 else [0.5] * in_chans,
        std=list(kat_torch.IMAGENET_STD) if in_chans == 3 else [0.5] * in_chans)
    has_fc_norm = any(k.startswith("fc_norm.") for k in sd)
    has_norm = any(k.startswith("norm.") for k in sd)
    c.global_pool = "avg" if has_fc_norm and not has_norm else "token"
    c.architecture = arch or upstream_name(c.ffn, c) or ""
    if not c.architecture:
        raise ValueError("these shapes are not an upstream *_patch16_224 model: name it with "
                         "--arch NAME and give --heads")
    if c.architecture[:4] != ("kat_" if kan else "vit_"):
        raise ValueError(f"--arch {c.architecture} does not fit a {'KAT' if kan else 'ViT'} "
                         f"state dict (name it {'kat_' if kan else 'vit_'}...)")
    try:
        named = kat_torch.named_config(c.architecture)
    except ValueError:
        named = None
    if named is not None:
        for key in ("img_size", "patch_size", "in_chans", "embed_dim", "depth"):
            if getattr(named, key) != getattr(c, key):
                raise ValueError(f"{c.architecture} has {key} {getattr(named, key)}, the "
                                 f"weights have {getattr(c, key)}")
        c.act_init, c.mean, c.std = named.act_init, named.mean, named.std
    if heads is None and named is None:
        raise ValueError(f"num_heads of '{c.architecture}' is unknown: pass --heads")
    c.num_heads = heads if heads is not None else named.num_heads
    return c


def pth_to_dir(src: str, out_dir: str, arch: str | None, heads: int | None,
               key: str | None) -> None:
    sd = extract_state_dict(torch.load(src, map_location="cpu"), key)
    c = infer_config(sd, arch, heads)
    model = kat_torch.model_from_config(c, weights_follow=True)
    unknown = sorted(set(sd) - set(model.state_dict()))
    if unknown:
        raise ValueError(f"{len(unknown)} tensor(s) kat's {c.architecture} does not have: "
                         f"{unknown[:10]}{' ...' if len(unknown) > 10 else ''} (layer scale, "
                         "norm and fc_norm together, register tokens and other timm options are not supported)")
    kat_torch.load_state_numpy(model, {k: v.numpy() for k, v in sd.items()}, src)
    kat_torch.save_checkpoint(out_dir, model, c)
    kat_torch.load_checkpoint(out_dir)  # what was written loads strictly
    n = sum(v.numel() for v in sd.values())
    print(f"wrote {out_dir}: {c.architecture}, {len(sd)} tensors, {n / 1e6:.2f}M parameters, "
          f"d={c.embed_dim} depth={c.depth} heads={c.num_heads} patch={c.patch_size} "
          f"img={c.img_size} in_chans={c.in_chans} classes={c.num_classes} ffn={c.ffn} "
          f"global_pool={c.global_pool}"
          + (f" groups={c.rational_groups}" if c.ffn == "kan" else ""))


def dir_to_pth(src_dir: str, out: str) -> None:
    model, cfg = kat_torch.load_checkpoint(src_dir)
    torch.save(model.state_dict(), out)
    n = len(model.state_dict())
    print(f"wrote {out}: {cfg['architecture']}, {n} tensors (plain state dict)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("src", nargs="?", help="upstream .pth")
    ap.add_argument("out_dir", nargs="?", help="kat checkpoint directory to write")
    ap.add_argument("--arch", help="architecture name, e.g. kat_tiny_swish_patch16_224")
    ap.add_argument("--heads", type=int, help="attention heads (not visible in the weights)")
    ap.add_argument("--key", help=f"state dict key in the .pth (default: first of {WRAPPER_KEYS})")
    ap.add_argument("--to-pth", nargs=2, metavar=("DIR", "OUT.pth"),
                    help="the reverse: kat checkpoint directory -> upstream state dict")
    args = ap.parse_args()
    try:
        if args.to_pth:
            if args.src or args.out_dir:
                ap.error("--to-pth takes DIR OUT.pth and no other arguments")
            dir_to_pth(*args.to_pth)
        else:
            if not (args.src and args.out_dir):
                ap.error("give SRC.pth OUT_DIR, or --to-pth DIR OUT.pth")
            pth_to_dir(args.src, args.out_dir, args.arch, args.heads, args.key)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
