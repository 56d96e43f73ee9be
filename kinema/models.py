"""Named models and how to load them: a model is a folder with dit.safetensors and
vae.safetensors (configs in their headers) and optionally a text_encoder/ folder; without one,
the bundled MiniLM encoder is used. `kinema-tiny` ships inside the package. A Wan2.1 folder, in
the diffusers layout or the original repository's, is converted on load (kinema/convert)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, fields
from pathlib import Path

from kinema.checkpoint import CheckpointError, load_into, read_weights
from kinema.convert.folders import load_wan_folder, model_layout
from kinema.dit.transformer import DiT, DiTConfig
from kinema.vae.causal_vae import CausalVAE, VAEConfig

ASSETS = Path(__file__).resolve().parent / "assets"
MODELS: dict[str, Path] = {"kinema-tiny": ASSETS / "kinema-tiny"}
DEFAULT_MODEL = "kinema-tiny"


def resolve_model(model: str | Path) -> Path:
    """A model name or a folder -> the folder; a clear error for anything else. A diffusers
    pipeline ("diffusers:/path") -> its folder (kinema/backends/diffusers_pipeline.py)."""
    if model is None:  # load(None): the default
        model = DEFAULT_MODEL
    if not isinstance(model, (str, Path)):
        raise CheckpointError(f"a model is a name or a folder path, not {type(model).__name__}")
    if str(model).startswith("diffusers:"):
        from kinema.backends.diffusers_pipeline import diffusers_folder

        return diffusers_folder(model)
    if str(model) in MODELS:
        folder = MODELS[str(model)]
    else:
        folder = Path(model)
        if not folder.is_dir():
            raise CheckpointError(
                f"unknown model {str(model)!r}: not a known name ({', '.join(MODELS)}) nor a folder"
            )
    if model_layout(folder) in ("diffusers", "wan"):
        return folder
    for name in ("dit.safetensors", "vae.safetensors"):
        if not (folder / name).is_file():
            raise CheckpointError(f"model folder {folder} has no {name}")
    return folder


def load_vae(path: str | Path) -> CausalVAE:
    tensors, config = read_weights(path, "kinema-vae")
    cfg = VAEConfig(**{**config, "channels": tuple(config["channels"])})
    return load_into(CausalVAE(cfg), tensors, path).eval()


def load_dit(
    path: str | Path,
    add_micro_conditioning: bool = False,
    add_pooled_text: bool = False,
    add_text_whitening: bool = False,
) -> DiT:
    """add_micro_conditioning / add_pooled_text: give a checkpoint without them fresh
    (zero-output) motion-and-fps or pooled-text inputs, to fine-tune them in;
    add_text_whitening: an identity text whitening, to be fitted (DiT.fit_text_whitening)."""
    tensors, config = read_weights(path, "kinema-dit")
    may_lack: tuple[str, ...] = ()
    if add_micro_conditioning:
        config = {**config, "micro_conditioning": True}
        may_lack += ("motion_embedding.", "fps_embedding.")
    if add_pooled_text:
        config = {**config, "pooled_text": True}
        may_lack += ("pooled_text_embedding.",)
    if add_text_whitening:
        config = {**config, "text_whitening": True}
        may_lack += ("text_whitening.",)
    try:
        cfg = DiTConfig(**config)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path} has a config this version cannot read: {e}") from None
    return load_into(DiT(cfg), tensors, path, may_lack).eval()


# Wan2.1's recommended sampling (its repository's generate.py and diffusers' WanPipeline): 50
# steps, guidance 5; the shift is the folder's scheduler's when it names one
WAN_DEFAULTS = {"steps": 50, "guidance": 5.0, "shift": 5.0}
# step caching too (kinema/sampling/step_cache.py): kinema-tiny's defaults.json turns on
# interleaved reuse, measured to keep its ShapesBench scores (README)
SAMPLER_KEYS = ("steps", "guidance", "shift", "solver", "eta", "eta_from", "cache_threshold",
                "cache_guidance_every", "cache_interval")  # fmt: skip
DEFAULTS_FILE = "defaults.json"  # optional in any model folder: sampler settings it wants


@dataclass(frozen=True)
class BaseFormat:
    """What a model generates well; the production pipeline generates there, then upsamples in
    time and space (kinema/production). The defaults are kinema-tiny's: 8 fps, trained up to
    96x64 and up to 33 frames, with known-frame reveals."""

    fps: float = 8.0
    native_pixels: int = 96 * 64  # a target up to this many pixels is generated as it is
    base_pixels: int = 64 * 64  # a larger one at about this many (its aspect), then upscaled
    max_frames: int = 33  # the longest clip made in one window; longer ones are chains
    # known_frames: the model was trained to continue from known latent frames (kinema's one
    # conditioning mechanism), so it takes pinned images and keyframes, extends clips and
    # chains windows; a model without it makes at most max_frames, in one window
    known_frames: bool = True


FORMAT_KEYS = tuple(f.name for f in fields(BaseFormat))
# Wan2.1 generates 5 s clips (81 frames at 16 fps) at 480p (1.3B) up to 720p (14B) in one pass,
# and was never trained with known frames (its I2V models take their images another way)
WAN_FORMAT = BaseFormat(fps=16.0, native_pixels=1280 * 720, base_pixels=832 * 480, max_frames=81,
                        known_frames=False)  # fmt: skip


def _defaults_file(folder: Path) -> dict:
    path = folder / DEFAULTS_FILE
    if not path.is_file():
        return {}
    try:
        given = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path} is not valid JSON: {e}") from None
    known = SAMPLER_KEYS + FORMAT_KEYS
    unknown = set(given) - set(known) if isinstance(given, dict) else {"(not a map)"}
    if unknown:
        raise CheckpointError(
            f"{path} names {', '.join(sorted(unknown))}; it may set {', '.join(known)}"
        )
    return given


def base_format(folder: Path) -> BaseFormat:
    """The production base format of a model folder: Wan's for a Wan2.1 folder, kinema-tiny's
    otherwise, then what its defaults.json says (fps, native_pixels, base_pixels, max_frames,
    known_frames)."""
    base = WAN_FORMAT if model_layout(folder) in ("diffusers", "wan") else BaseFormat()
    given = {k: v for k, v in _defaults_file(folder).items() if k in FORMAT_KEYS}
    fmt = dataclasses.replace(base, **given)
    frames = fmt.max_frames
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
        raise CheckpointError(
            f"{folder / DEFAULTS_FILE}: max_frames must be a whole number of frames, e.g. 81"
        )
    if not isinstance(fmt.known_frames, bool):
        raise CheckpointError(f"{folder / DEFAULTS_FILE}: known_frames must be true or false")
    return fmt


def sampler_defaults(folder: Path) -> dict:
    """The sampler settings a model folder asks for (steps, guidance, shift, solver, step
    caching): Wan's recommended ones for a Wan2.1 folder, then what its defaults.json says.
    Settings a caller gives win over these (text_to_video.with_defaults); what neither names
    keeps kinema's defaults (GenerationSettings)."""
    out: dict = {}
    if model_layout(folder) in ("diffusers", "wan"):
        out.update(WAN_DEFAULTS)
        scheduler = folder / "scheduler" / "scheduler_config.json"
        if scheduler.is_file():
            config = json.loads(scheduler.read_text())
            shift = config.get("flow_shift") or config.get("shift")
            if shift:
                out["shift"] = float(shift)
    out.update({k: v for k, v in _defaults_file(folder).items() if k in SAMPLER_KEYS})
    return out


def load_components(folder: Path, device: str = "cpu"):
    """(text encoder, DiT, VAE) of a folder from resolve_model, whatever its layout; a Wan2.1
    folder gives a WanVAE, which has CausalVAE's interface."""
    from kinema.text.encoder import TextEncoder

    if model_layout(folder) in ("diffusers", "wan"):
        return load_wan_folder(folder, device)
    text_dir = folder / "text_encoder"
    encoder = TextEncoder(text_dir if text_dir.is_dir() else None, device=device)
    dit = load_dit(folder / "dit.safetensors").to(device)
    return encoder, dit, load_vae(folder / "vae.safetensors").to(device)
