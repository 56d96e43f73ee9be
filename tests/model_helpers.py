"""Tiny untrained kinema model folders for the tests: a one-layer DiT next to a copy of the
shipped VAE, with or without the micro-conditioning inputs (motion strength and fps). The one
without them stands for a model that must refuse `motion`, `--motion`, `kinema animate` and
`--hierarchical`, now that the shipped kinema-tiny has them."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from kinema.checkpoint import save_weights
from kinema.dit.transformer import DiT, DiTConfig
from kinema.models import MODELS


def tiny_model(folder: Path, *, micro_conditioning: bool, perturb: float = 0.0) -> Path:
    """Write dit.safetensors (dim 32, one layer, seed 0) and the shipped vae.safetensors into
    folder. perturb: the std of noise added to every weight (untrained weights are zero at the
    outputs; noise makes the inputs matter)."""
    torch.manual_seed(0)
    cfg = DiTConfig(dim=32, ffn_dim=64, heads=2, layers=1, micro_conditioning=micro_conditioning)
    dit = DiT(cfg)
    if perturb:
        with torch.no_grad():
            for p in dit.parameters():
                p.add_(torch.randn_like(p) * perturb)
    save_weights(folder / "dit.safetensors", dit, "kinema-dit", cfg)
    shutil.copy(MODELS["kinema-tiny"] / "vae.safetensors", folder / "vae.safetensors")
    return folder
