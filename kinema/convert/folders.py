"""Wan2.1 model folders -> kinema's text encoder, DiT and WanVAE, converted on load.

Two layouts are recognised (nothing is downloaded: the folder holds everything):
- diffusers (e.g. Wan-AI/Wan2.1-T2V-1.3B-Diffusers): model_index.json, transformer/ (config.json
  + diffusion_pytorch_model*.safetensors), vae/, text_encoder/ (UMT5EncoderModel), tokenizer/,
  scheduler/ (not used: kinema samples with its own flow-matching solvers); image-to-video
  folders (WanImageToVideoPipeline) add image_encoder/ (a CLIP vision model) and
  image_processor/;
- the original Wan repository's (e.g. Wan-AI/Wan2.1-T2V-1.3B): config.json (WanModel) and
  diffusion_pytorch_model*.safetensors (sharded for 14B), Wan2.1_VAE.pth,
  models_t5_umt5-xxl-enc-bf16.pth (Wan's own T5 code) and the google/umt5-xxl tokenizer folder;
  image-to-video folders add models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth.
The transformer, VAE and CLIP image encoder are read as float32; the text encoder keeps its
file's dtype. Image-to-video models (I2V, FLF2V) run through kinema/pipeline/wan_i2v.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors.torch import load_file

from kinema.checkpoint import CheckpointError
from kinema.convert.wan import (
    dit_config_from_diffusers,
    dit_config_from_wan,
    dit_key_to_diffusers,
    rename,
    strip_prefix,
    t5_from_wan,
    vae_config_from_diffusers,
    vae_config_from_state,
    vae_key_to_diffusers,
)
from kinema.convert.wan_clip import clip_vision_from_wan
from kinema.dit.transformer import DiT, DiTConfig
from kinema.pipeline.image_encoder import ClipImageEncoder, ClipPreprocess, load_clip_vision
from kinema.text.encoder import TextEncoder
from kinema.vae.wan_vae import WanVAE, WanVAEConfig

WAN_PIPELINES = ("WanPipeline", "WanImageToVideoPipeline")
WAN_VAE_FILE = "Wan2.1_VAE.pth"
WAN_T5_FILE = "models_t5_umt5-xxl-enc-bf16.pth"
WAN_TOKENIZER_DIR = "google/umt5-xxl"
WAN_CLIP_FILE = "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth"


def model_layout(folder: Path) -> str | None:
    """'kinema', 'diffusers' or 'wan' (the original repository's layout); None if neither."""
    folder = Path(folder)
    if (folder / "dit.safetensors").is_file() and (folder / "vae.safetensors").is_file():
        return "kinema"
    if (folder / "model_index.json").is_file():
        return "diffusers"
    if (folder / "config.json").is_file() and _shards(folder) and (folder / WAN_VAE_FILE).is_file():
        return "wan"
    return None


def _shards(folder: Path) -> list[Path]:
    """diffusion_pytorch_model.safetensors or its shards (-0000i-of-0000n); variants such as
    .fp16.safetensors only when there is nothing else."""
    files = sorted(folder.glob("diffusion_pytorch_model*.safetensors"))
    plain = [
        f
        for f in files
        if re.fullmatch(r"diffusion_pytorch_model(-\d+-of-\d+)?\.safetensors", f.name)
    ]
    return plain or files


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot read {path}: {e}") from None


def _read_safetensors(files: list[Path], where: Path) -> dict[str, torch.Tensor]:
    if not files:
        raise CheckpointError(f"{where} has no diffusion_pytorch_model*.safetensors")
    state: dict[str, torch.Tensor] = {}
    for f in files:
        state.update(load_file(str(f)))
    return state


def _read_pth(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"no {path.name} in {path.parent}")
    state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    return state.get("state_dict", state) if isinstance(state, dict) else state


def _load(module: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Assign float32 copies of state's tensors to module (which may live on the meta device)."""
    module.load_state_dict({k: v.float() for k, v in state.items()}, strict=True, assign=True)


def _check_diffusers(folder: Path) -> None:
    index = _read_json(folder / "model_index.json")
    name = index.get("_class_name")
    if name not in WAN_PIPELINES:
        raise CheckpointError(f"{folder} holds a diffusers {name!r}; kinema reads {WAN_PIPELINES}")
    if (index.get("transformer_2") or [None])[0] is not None:
        raise CheckpointError(
            f"{folder} is a Wan2.2 two-expert model (transformer_2); kinema reads Wan2.1 folders"
        )


def _header_shapes(files: list[Path], where: Path) -> dict[str, torch.Tensor]:
    """The tensors of safetensors files as empty meta tensors of their shapes (headers only)."""
    from safetensors import safe_open

    if not files:
        raise CheckpointError(f"{where} has no diffusion_pytorch_model*.safetensors")
    shapes: dict[str, torch.Tensor] = {}
    for f in files:
        with safe_open(str(f), "pt") as opened:
            for key in opened.keys():  # noqa: SIM118 (safe_open is not iterable)
                shape = opened.get_slice(key).get_shape()
                shapes[key] = torch.empty(shape, device="meta")
    return shapes


def wan_dit_config(folder: str | Path) -> DiTConfig:
    """The transformer config of a Wan2.1 folder (T2V, I2V or FLF2V: see wan_i2v.wan_images),
    from its config file and weight headers only (the server checks requests with it)."""
    folder = Path(folder)
    layout = model_layout(folder)
    if layout == "diffusers":
        _check_diffusers(folder)
        return dit_config_from_diffusers(_read_json(folder / "transformer" / "config.json"))
    if layout == "wan":
        shapes = strip_prefix(_header_shapes(_shards(folder), folder))
        return dit_config_from_wan(_read_json(folder / "config.json"), shapes)
    raise CheckpointError(f"{folder} is not a Wan2.1 folder (diffusers or original layout)")


def wan_configs(folder: str | Path) -> tuple[DiTConfig, WanVAEConfig, int]:
    """(transformer config, VAE config, text encoder bytes) of a Wan2.1 folder, reading configs
    and weight headers only (`kinema plan` costs a 14B model without loading it). The text
    encoder's bytes are its files' (kinema keeps it in its file's dtype)."""
    folder = Path(folder)
    dit = wan_dit_config(folder)
    if model_layout(folder) == "diffusers":
        vae = vae_config_from_diffusers(_read_json(folder / "vae" / "config.json"))
        text = sum(f.stat().st_size for f in (folder / "text_encoder").glob("*.safetensors"))
    else:
        vae = vae_config_from_state(_read_pth(folder / WAN_VAE_FILE))
        text = (folder / WAN_T5_FILE).stat().st_size if (folder / WAN_T5_FILE).is_file() else 0
    return dit, vae, text


def load_wan_dit(folder: str | Path) -> DiT:
    """The transformer of a Wan2.1 folder (either layout) as kinema's DiT, in eval mode."""
    folder = Path(folder)
    layout = model_layout(folder)
    if layout == "diffusers":
        _check_diffusers(folder)
        cfg = dit_config_from_diffusers(_read_json(folder / "transformer" / "config.json"))
        state = _read_safetensors(_shards(folder / "transformer"), folder / "transformer")
    elif layout == "wan":
        state = strip_prefix(_read_safetensors(_shards(folder), folder))
        cfg = dit_config_from_wan(_read_json(folder / "config.json"), state)
    else:
        raise CheckpointError(f"{folder} is not a Wan2.1 folder (diffusers or original layout)")
    with torch.device("meta"):  # no random init of billions of weights about to be replaced
        dit = DiT(cfg)
    if layout == "diffusers":
        state = rename(state, dit.state_dict(), dit_key_to_diffusers, f"{folder}/transformer",
                       ignore=("norm_added_q.weight", "norm_added_q.bias"))  # fmt: skip
    else:
        state = rename(state, dit.state_dict(), lambda k: k, str(folder))
    _load(dit, state)
    return dit.eval()


def load_wan_vae(folder: str | Path) -> WanVAE:
    """The VAE of a Wan2.1 folder (vae/ of the diffusers layout or Wan2.1_VAE.pth)."""
    folder = Path(folder)
    if model_layout(folder) == "diffusers":
        cfg = vae_config_from_diffusers(_read_json(folder / "vae" / "config.json"))
        vae = WanVAE(cfg)
        state = _read_safetensors(_shards(folder / "vae"), folder / "vae")
        state = rename(
            state, vae.state_dict(), lambda k: vae_key_to_diffusers(k, cfg), f"{folder}/vae"
        )
    else:
        state = _read_pth(folder / WAN_VAE_FILE)
        try:
            vae = WanVAE(vae_config_from_state(state))
        except (KeyError, ValueError, ZeroDivisionError) as e:
            raise CheckpointError(f"{folder / WAN_VAE_FILE} is not a Wan2.1 VAE ({e})") from None
        state = rename(state, vae.state_dict(), lambda k: k, str(folder / WAN_VAE_FILE))
    _load(vae, state)
    return vae.eval()


def load_wan_text_encoder(
    folder: str | Path, max_length: int = 512, device: str | torch.device = "cpu"
) -> TextEncoder:
    """The umT5 encoder and tokenizer of a Wan2.1 folder (or any transformers encoder that
    gives per-token states, in text_encoder/ and tokenizer/ of the diffusers layout)."""
    folder = Path(folder)
    if model_layout(folder) == "diffusers":
        return TextEncoder(folder / "text_encoder", max_length, device, folder / "tokenizer")
    from transformers import AutoTokenizer

    tokenizer_dir = folder / WAN_TOKENIZER_DIR
    if not tokenizer_dir.is_dir():
        raise CheckpointError(f"no tokenizer folder {WAN_TOKENIZER_DIR} in {folder}")
    model = t5_from_wan(_read_pth(folder / WAN_T5_FILE))
    return TextEncoder.from_modules(
        AutoTokenizer.from_pretrained(tokenizer_dir), model, max_length, device
    )


def load_wan_image_encoder(
    folder: str | Path, device: str | torch.device = "cpu"
) -> ClipImageEncoder:
    """The CLIP image encoder of a Wan2.1 image-to-video folder: image_encoder/ and
    image_processor/ of the diffusers layout, or Wan's CLIP file converted (its vision tower,
    preprocessed as diffusers' folders say: shortest side to the model's size, centre crop)."""
    folder = Path(folder)
    if model_layout(folder) == "diffusers":
        if not (folder / "image_encoder" / "config.json").is_file():
            raise CheckpointError(
                f"{folder} is a Wan image-to-video model without image_encoder/ (its CLIP)"
            )
        processor = folder / "image_processor" / "preprocessor_config.json"
        model = load_clip_vision(folder / "image_encoder")
        preprocess = ClipPreprocess.from_json(processor) if processor.is_file() else None
    else:
        if not (folder / WAN_CLIP_FILE).is_file():
            raise CheckpointError(
                f"{folder} is a Wan image-to-video model without {WAN_CLIP_FILE} (its CLIP)"
            )
        model = clip_vision_from_wan(_read_pth(folder / WAN_CLIP_FILE)).float()
        preprocess = None
    if preprocess is None:
        size = model.config.image_size
        preprocess = ClipPreprocess(size=size, crop=(size, size))
    return ClipImageEncoder(model, preprocess, device)


def load_wan_folder(
    folder: str | Path, device: str | torch.device = "cpu"
) -> tuple[TextEncoder, DiT, WanVAE]:
    """Text encoder, transformer and VAE of a Wan2.1 folder, ready for kinema's TextToVideo
    pipeline; an image-to-video one also needs load_wan_image_encoder."""
    dit = load_wan_dit(folder)
    if dit.cfg.in_channels != dit.cfg.out_channels and dit.cfg.image_dim is None:
        raise CheckpointError(
            f"{folder}: an image-to-video transformer without CLIP image input (Wan2.2?) is not "
            "supported; kinema runs Wan2.1 T2V, I2V and FLF2V models"
        )
    encoder = load_wan_text_encoder(folder, dit.cfg.text_len or 512, device)
    return encoder, dit.to(device), load_wan_vae(folder).to(device)
