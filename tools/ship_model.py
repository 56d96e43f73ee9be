"""Copy trained weights into the package as a named model, in fp16 (checked against fp32).

    python tools/ship_model.py --vae runs/vae/vae.safetensors --dit runs/dit/dit.safetensors

Writes kinema/assets/kinema-tiny/{vae,dit}.safetensors and prints the size and the largest
change fp16 makes to a decoded clip and to a transformer output.
"""

import argparse
import json
from pathlib import Path

import torch

from kinema.checkpoint import save_weights
from kinema.models import ASSETS, load_dit, load_vae


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--vae", type=Path)
    parser.add_argument("--dit", type=Path)
    parser.add_argument("--name", default="kinema-tiny")
    args = parser.parse_args()
    out = ASSETS / args.name
    out.mkdir(parents=True, exist_ok=True)
    report = {}
    torch.manual_seed(0)
    if args.vae:
        vae = load_vae(args.vae)
        path = save_weights(
            out / "vae.safetensors", vae, "kinema-vae", vae.cfg, dtype=torch.float16
        )
        z = torch.randn(1, vae.cfg.latent_channels, 5, 16, 16)
        with torch.inference_mode():
            diff = (load_vae(path).decode(z) - vae.decode(z)).abs().max().item()
        report["vae"] = {"bytes": path.stat().st_size, "fp16_max_abs_diff_decode": diff}
    if args.dit:
        dit = load_dit(args.dit)
        path = save_weights(
            out / "dit.safetensors", dit, "kinema-dit", dit.cfg, dtype=torch.float16
        )
        x, t, ctx = (
            torch.randn(1, 16, 5, 16, 16),
            torch.rand(1),
            torch.randn(1, 12, dit.cfg.text_dim),
        )
        with torch.inference_mode():
            ref = dit(x, t, ctx)
            diff = (load_dit(path)(x, t, ctx) - ref).abs().max().item()
        report["dit"] = {"bytes": path.stat().st_size, "fp16_max_abs_diff_output": diff,
                         "output_abs_mean": ref.abs().mean().item()}  # fmt: skip
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
