"""Copy trained weights into the package as a named model, in fp16 (checked against fp32).

    python tools/ship_model.py --vae runs/vae/vae.safetensors --dit runs/dit/dit.safetensors
    python tools/ship_model.py --interp runs/interp/interp.safetensors --sr runs/sr/sr.safetensors

Writes kinema/assets/kinema-tiny/{vae,dit}.safetensors (the production pipeline's upsamplers:
kinema/assets/production/{interp,sr}.safetensors) and prints the size and the largest change
fp16 makes to a decoded clip, a transformer output or an upsampled frame (0..255).
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
    parser.add_argument("--interp", type=Path, help="frame interpolator (kinema train interp)")
    parser.add_argument("--sr", type=Path, help="x4 super-resolution (kinema train sr)")
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
    for kind in ("interp", "sr"):
        if getattr(args, kind):
            report[kind] = ship_upsampler(kind, getattr(args, kind))
    print(json.dumps(report, indent=1))


def ship_upsampler(kind: str, source: Path) -> dict:
    import numpy as np

    from kinema.production import interp_net, sr_net
    from kinema.production.interpolate import make_interpolator
    from kinema.production.upscale import make_upscaler
    from kinema.world import random_scene, render

    module = interp_net if kind == "interp" else sr_net
    net = interp_net.load_interp(source) if kind == "interp" else sr_net.load_sr(source)
    module.SHIPPED.parent.mkdir(parents=True, exist_ok=True)
    path = save_weights(module.SHIPPED, net, module.KIND, net.cfg, dtype=torch.float16)
    frames = render(random_scene(np.random.default_rng(0)), 64, 64, 5, 8)
    if kind == "interp":
        made = [
            make_interpolator(str(p))(frames, np.array([0.5, 1.5, 2.5])) for p in (source, path)
        ]
    else:
        made = [make_upscaler(str(p))(frames, 256, 256) for p in (source, path)]
    diff = int(np.abs(made[0].astype(int) - made[1]).max())
    return {"bytes": path.stat().st_size, "fp16_max_abs_diff_frames": diff}


if __name__ == "__main__":
    main()
