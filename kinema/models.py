"""Named models and how to load them: a model is a folder with dit.safetensors and
vae.safetensors (configs in their headers) and optionally a text_encoder/ folder; without one,
the bundled MiniLM encoder is used. `kinema-tiny` ships inside the package."""

from __future__ import annotations

from pathlib import Path

from kinema.checkpoint import CheckpointError, load_into, read_weights
from kinema.dit.transformer import DiT, DiTConfig
from kinema.vae.causal_vae import CausalVAE, VAEConfig

ASSETS = Path(__file__).resolve().parent / "assets"
MODELS: dict[str, Path] = {"kinema-tiny": ASSETS / "kinema-tiny"}
DEFAULT_MODEL = "kinema-tiny"


def resolve_model(model: str | Path) -> Path:
    """A model name or a folder -> the folder; a clear error for anything else."""
    if str(model) in MODELS:
        folder = MODELS[str(model)]
    else:
        folder = Path(model)
        if not folder.is_dir():
            raise CheckpointError(
                f"unknown model {str(model)!r}: not a known name ({', '.join(MODELS)}) nor a folder"
            )
    for name in ("dit.safetensors", "vae.safetensors"):
        if not (folder / name).is_file():
            raise CheckpointError(f"model folder {folder} has no {name}")
    return folder


def load_vae(path: str | Path) -> CausalVAE:
    tensors, config = read_weights(path, "kinema-vae")
    cfg = VAEConfig(**{**config, "channels": tuple(config["channels"])})
    return load_into(CausalVAE(cfg), tensors, path).eval()


def load_dit(path: str | Path, add_micro_conditioning: bool = False) -> DiT:
    """add_micro_conditioning: give a checkpoint without them fresh (zero-output) motion and fps
    inputs, to fine-tune them in."""
    tensors, config = read_weights(path, "kinema-dit")
    if add_micro_conditioning:
        config = {**config, "micro_conditioning": True}
    try:
        cfg = DiTConfig(**config)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path} has a config this version cannot read: {e}") from None
    may_lack = ("motion_embedding.", "fps_embedding.") if add_micro_conditioning else ()
    return load_into(DiT(cfg), tensors, path, may_lack).eval()
