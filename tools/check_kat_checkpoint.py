"""Checks a checkpoint written by kat (C++) against the PyTorch reference.

    /usr/bin/python3 tools/check_kat_checkpoint.py DIR PIXELS.safetensors

DIR holds config.json + model.safetensors; PIXELS.safetensors holds "pixels" (uint8 [B, C, H, W])
and "logits" ([B, num_classes], what kat computed). The model is loaded strictly with
kat_torch.load_checkpoint, run in float64 on normalize(pixels, mean, std) from the config's
pretrained_cfg, and compared with "logits". Prints the max abs difference; exits 1 if it is above
1e-4 (and 2 on a file that cannot be used).
"""

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kat_torch  # noqa: E402
import safetensors_np  # noqa: E402

TOLERANCE = 1e-4


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("checkpoint", help="checkpoint directory (config.json + model.safetensors)")
    ap.add_argument("pixels", help='safetensors file with "pixels" (uint8) and "logits"')
    args = ap.parse_args()
    try:
        model, _ = kat_torch.load_checkpoint(args.checkpoint)
        tensors, _ = safetensors_np.load(args.pixels)
    except (OSError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if "logits" not in tensors or "pixels" not in tensors or tensors["pixels"].dtype != "uint8":
        print(f'error: {args.pixels} needs "pixels" (uint8) and "logits"', file=sys.stderr)
        return 2
    c = model.config  # mean and std from config.json's pretrained_cfg
    x = kat_torch.normalize(torch.from_numpy(tensors["pixels"]), c.mean, c.std).double()
    with torch.no_grad():
        ours = model.double()(x)
    theirs = torch.from_numpy(tensors["logits"]).double()
    if ours.shape != theirs.shape:
        print(f"error: logits have shape {list(theirs.shape)}, the model gives {list(ours.shape)}",
              file=sys.stderr)
        return 2
    diff = float((ours - theirs).abs().max())
    verdict = "ok" if diff <= TOLERANCE else f"FAIL (> {TOLERANCE:g})"
    print(f"max abs logit difference {diff:.3e} over {ours.numel()} logits: {verdict}")
    return 0 if diff <= TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
