"""Wan2.1 checkpoints -> kinema's classes: parameter names and configs, as pure functions.

kinema's DiT and WanVAE use the parameter names of the original Wan2.1 repository, so its
files load as they are; diffusers' WanTransformer3DModel and AutoencoderKLWan rename them.
Each mapping is written once, from kinema's name to diffusers' (`dit_key_to_diffusers`,
`vae_key_to_diffusers`), and inverted over the kinema model's own keys, so that a key nobody
expects is an error instead of a silently random weight. The umT5 text encoder of the original
layout (models_t5_umt5-xxl-enc-bf16.pth, Wan's own T5 code) maps onto transformers' UMT5.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

import torch

from kinema.checkpoint import CheckpointError
from kinema.dit.transformer import DiTConfig
from kinema.vae.wan_vae import WAN21_LATENTS_MEAN, WAN21_LATENTS_STD, WanVAEConfig

Tensors = dict[str, torch.Tensor]


def rename(
    state: Tensors,
    own_keys: Iterable[str],
    own_to_other: Callable[[str], str],
    what: str,
    ignore: tuple[str, ...] = (),
) -> Tensors:
    """A state dict in another naming -> kinema's names (own_keys); every key accounted for."""
    wanted = {own_to_other(k): k for k in own_keys}
    extra = sorted(k for k in state if k not in wanted and not k.endswith(ignore))
    missing = sorted(k for k in wanted if k not in state)
    if extra or missing:
        detail = f"unexpected {extra[:3]}" if extra else f"missing {missing[:3]}"
        raise CheckpointError(f"{what} does not match the model's architecture: {detail}")
    return {own: state[other] for other, own in wanted.items()}


# --- transformer -------------------------------------------------------------------------------

_DIT_TOP = {
    "text_embedding.0": "condition_embedder.text_embedder.linear_1",
    "text_embedding.2": "condition_embedder.text_embedder.linear_2",
    "time_embedding.0": "condition_embedder.time_embedder.linear_1",
    "time_embedding.2": "condition_embedder.time_embedder.linear_2",
    "time_projection.1": "condition_embedder.time_proj",
    "img_emb.proj.0": "condition_embedder.image_embedder.norm1",
    "img_emb.proj.1": "condition_embedder.image_embedder.ff.net.0.proj",
    "img_emb.proj.3": "condition_embedder.image_embedder.ff.net.2",
    "img_emb.proj.4": "condition_embedder.image_embedder.norm2",
    "img_emb.emb_pos": "condition_embedder.image_embedder.pos_embed",
    "head.head": "proj_out",
    "head.modulation": "scale_shift_table",
}
_DIT_BLOCK = {
    "self_attn": "attn1",
    "cross_attn": "attn2",
    ".q": ".to_q",
    ".k": ".to_k",
    ".v": ".to_v",
    ".o": ".to_out.0",
    ".k_img": ".add_k_proj",
    ".v_img": ".add_v_proj",
    ".norm_k_img": ".norm_added_k",
    "norm3": "norm2",  # the cross-attention norm: norm3 in Wan, norm2 in diffusers
    "ffn.0": "ffn.net.0.proj",
    "ffn.2": "ffn.net.2",
    "modulation": "scale_shift_table",
}
_BLOCK_PART = re.compile(r"(self_attn|cross_attn|norm3|ffn\.0|ffn\.2|modulation)(\.\w+)?")


def dit_key_to_diffusers(key: str) -> str:
    """kinema (= original Wan) transformer key -> WanTransformer3DModel key."""
    m = re.fullmatch(r"blocks\.(\d+)\.(.+)", key)
    if m is None:
        for ours, theirs in _DIT_TOP.items():
            if key == ours or key.startswith(ours + "."):
                return theirs + key[len(ours) :]
        return key  # patch_embedding
    rest = m.group(2)
    part = _BLOCK_PART.match(rest)
    if part is None:
        return key
    name, sub = part.group(1), part.group(2) or ""
    tail = rest[part.end() :]
    new = _DIT_BLOCK[name] + (_DIT_BLOCK.get(sub, sub) if name.endswith("attn") else sub)
    return f"blocks.{m.group(1)}.{new}{tail}"


def dit_config_from_diffusers(config: dict) -> DiTConfig:
    """transformer/config.json of a diffusers Wan2.1 folder -> DiTConfig."""
    dim = config["num_attention_heads"] * config["attention_head_dim"]
    if config.get("added_kv_proj_dim") not in (None, dim):
        raise CheckpointError(f"added_kv_proj_dim {config['added_kv_proj_dim']} != width {dim}")
    return DiTConfig(
        in_channels=config.get("in_channels", 16),
        out_channels=config.get("out_channels") or config.get("in_channels", 16),
        patch=tuple(config.get("patch_size", (1, 2, 2))),
        dim=dim,
        ffn_dim=config["ffn_dim"],
        heads=config["num_attention_heads"],
        layers=config["num_layers"],
        text_dim=config.get("text_dim", 4096),
        freq_dim=config.get("freq_dim", 256),
        qk_norm=bool(config.get("qk_norm", "rms_norm_across_heads")),
        cross_attn_norm=config.get("cross_attn_norm", True),
        eps=config.get("eps", 1e-6),
        text_len=512,
        image_dim=config.get("image_dim"),
        image_pos_len=config.get("pos_embed_seq_len"),
    )


def dit_config_from_wan(config: dict, state: Tensors) -> DiTConfig:
    """config.json of an original Wan2.1 folder (WanModel) -> DiTConfig; the image embedding's
    sizes (I2V, FLF2V) are read from the weights."""
    if config.get("model_type", "t2v") not in ("t2v", "i2v", "flf2v"):
        raise CheckpointError(f"Wan model type {config['model_type']!r} is not supported")
    image = state.get("img_emb.proj.0.weight")
    pos = state.get("img_emb.emb_pos")
    return DiTConfig(
        in_channels=config.get("in_dim", 16),
        out_channels=config.get("out_dim", 16),
        patch=tuple(config.get("patch_size", (1, 2, 2))),
        dim=config["dim"],
        ffn_dim=config["ffn_dim"],
        heads=config["num_heads"],
        layers=config["num_layers"],
        text_dim=config.get("text_dim", 4096),
        freq_dim=config.get("freq_dim", 256),
        qk_norm=config.get("qk_norm", True),
        cross_attn_norm=config.get("cross_attn_norm", True),
        eps=config.get("eps", 1e-6),
        text_len=config.get("text_len", 512),
        image_dim=None if image is None else image.shape[0],
        image_pos_len=None if pos is None else pos.shape[1],
    )


def wan_config_from_dit(cfg: DiTConfig) -> dict:
    """DiTConfig -> the config.json of an original Wan2.1 folder."""
    model_type = "t2v" if cfg.image_dim is None else "i2v" if cfg.image_pos_len is None else "flf2v"
    return {
        "_class_name": "WanModel", "model_type": model_type, "patch_size": list(cfg.patch),
        "text_len": cfg.text_len or 512, "in_dim": cfg.in_channels, "dim": cfg.dim,
        "ffn_dim": cfg.ffn_dim, "freq_dim": cfg.freq_dim, "text_dim": cfg.text_dim,
        "out_dim": cfg.out_channels, "num_heads": cfg.heads, "num_layers": cfg.layers,
        "qk_norm": cfg.qk_norm, "cross_attn_norm": cfg.cross_attn_norm, "eps": cfg.eps,
    }  # fmt: skip


def strip_prefix(state: Tensors, prefix: str = "model.diffusion_model.") -> Tensors:
    """Some repackaged Wan files (ComfyUI) prefix every key."""
    return {k.removeprefix(prefix): v for k, v in state.items()}


# --- VAE -----------------------------------------------------------------------------------

_RESIDUAL = {"residual.0": "norm1", "residual.2": "conv1", "residual.3": "norm2",
             "residual.6": "conv2", "shortcut": "conv_shortcut"}  # fmt: skip
_MIDDLE = {"middle.0": "mid_block.resnets.0", "middle.1": "mid_block.attentions.0",
           "middle.2": "mid_block.resnets.1", "head.0": "norm_out", "head.2": "conv_out",
           "conv1": "conv_in"}  # fmt: skip


def _residual(rest: str) -> str:
    for ours, theirs in _RESIDUAL.items():
        if rest.startswith(ours + "."):
            return theirs + rest[len(ours) :]
    return rest


def vae_key_to_diffusers(key: str, cfg: WanVAEConfig) -> str:
    """kinema (= original Wan) VAE key -> AutoencoderKLWan key. The decoder's flat list of
    upsampling layers becomes diffusers' up_blocks (num_res_blocks + 1 resnets, then an
    upsampler, per level); the encoder's list keeps its indices as down_blocks."""
    top = {"conv1.": "quant_conv.", "conv2.": "post_quant_conv."}
    for ours, theirs in top.items():
        if key.startswith(ours):
            return theirs + key[len(ours) :]
    side, rest = key.split(".", 1)  # encoder | decoder
    for ours, theirs in _MIDDLE.items():
        if rest.startswith(ours + "."):
            tail = rest[len(ours) + 1 :]
            return f"{side}.{theirs}.{_residual(tail) if 'resnets' in theirs else tail}"
    m = re.fullmatch(r"(downsamples|upsamples)\.(\d+)\.(.+)", rest)
    if m is None:
        raise CheckpointError(f"unknown Wan VAE key {key!r}")
    index, tail = int(m.group(2)), m.group(3)
    if side == "encoder":
        return f"encoder.down_blocks.{index}.{_residual(tail)}"
    per_level = cfg.num_res_blocks + 2  # resnets then the upsampler
    level, slot = divmod(index, per_level)
    if slot == per_level - 1:
        return f"decoder.up_blocks.{level}.upsamplers.0.{tail}"
    return f"decoder.up_blocks.{level}.resnets.{slot}.{_residual(tail)}"


def vae_config_from_diffusers(config: dict) -> WanVAEConfig:
    """vae/config.json of a diffusers Wan2.1 folder -> WanVAEConfig (Wan2.2's VAE is refused)."""
    unsupported = {
        "is_residual": config.get("is_residual", False),
        "patch_size": config.get("patch_size"),
        "attn_scales": config.get("attn_scales") or None,
    }
    if config.get("decoder_base_dim") not in (None, config.get("base_dim", 96)):
        unsupported["decoder_base_dim"] = config["decoder_base_dim"]
    given = {k: v for k, v in unsupported.items() if v}
    if given:
        raise CheckpointError(f"this VAE (Wan2.2?) is not supported: {given}")
    z_dim = config.get("z_dim", 16)
    return WanVAEConfig(
        base_dim=config.get("base_dim", 96),
        z_dim=z_dim,
        dim_mult=tuple(config.get("dim_mult", (1, 2, 4, 4))),
        num_res_blocks=config.get("num_res_blocks", 2),
        temporal_downsample=tuple(config.get("temperal_downsample", (False, True, True))),
        latents_mean=tuple(config.get("latents_mean") or WAN21_LATENTS_MEAN),
        latents_std=tuple(config.get("latents_std") or WAN21_LATENTS_STD),
    )


def vae_config_from_state(
    state: Tensors,
    latents_mean: tuple[float, ...] = WAN21_LATENTS_MEAN,
    latents_std: tuple[float, ...] = WAN21_LATENTS_STD,
) -> WanVAEConfig:
    """The config of an original Wan2.1_VAE.pth (which holds none), read from its weights;
    the latent statistics default to Wan2.1's (they live in Wan's code, not in the file)."""
    base = state["encoder.conv1.weight"].shape[0]
    down = sorted({int(k.split(".")[2]) for k in state if k.startswith("encoder.downsamples.")})
    kinds = []  # per encoder layer: out channels of a residual block, or a resample mode
    for i in down:
        if f"encoder.downsamples.{i}.resample.1.weight" in state:
            kinds.append(f"encoder.downsamples.{i}.time_conv.weight" in state)
        else:
            kinds.append(state[f"encoder.downsamples.{i}.residual.2.weight"].shape[0])
    resamples = [k for k in kinds if isinstance(k, bool)]
    blocks = [k for k in kinds if not isinstance(k, bool)]
    levels = len(resamples) + 1
    per_level = len(blocks) // levels
    return WanVAEConfig(
        base_dim=base,
        z_dim=state["conv2.weight"].shape[0],
        dim_mult=tuple(blocks[i * per_level] // base for i in range(levels)),
        num_res_blocks=per_level,
        temporal_downsample=tuple(resamples),
        latents_mean=tuple(latents_mean),
        latents_std=tuple(latents_std),
    )


def vae_config_to_diffusers(cfg: WanVAEConfig) -> dict:
    return {
        "base_dim": cfg.base_dim, "z_dim": cfg.z_dim, "dim_mult": list(cfg.dim_mult),
        "num_res_blocks": cfg.num_res_blocks, "attn_scales": [],
        "temperal_downsample": list(cfg.temporal_downsample),
        "latents_mean": list(cfg.latents_mean), "latents_std": list(cfg.latents_std),
    }  # fmt: skip


# --- umT5 text encoder (original layout) ----------------------------------------------------

_T5_BLOCK = {
    "norm1.weight": "layer.0.layer_norm.weight",
    "attn.q.weight": "layer.0.SelfAttention.q.weight",
    "attn.k.weight": "layer.0.SelfAttention.k.weight",
    "attn.v.weight": "layer.0.SelfAttention.v.weight",
    "attn.o.weight": "layer.0.SelfAttention.o.weight",
    "pos_embedding.embedding.weight": "layer.0.SelfAttention.relative_attention_bias.weight",
    "norm2.weight": "layer.1.layer_norm.weight",
    "ffn.gate.0.weight": "layer.1.DenseReluDense.wi_0.weight",
    "ffn.fc1.weight": "layer.1.DenseReluDense.wi_1.weight",
    "ffn.fc2.weight": "layer.1.DenseReluDense.wo.weight",
}  # a relative position bias per layer: umT5 (T5 shares one)
_T5_TOP = {
    "token_embedding.weight": "shared.weight",
    "norm.weight": "encoder.final_layer_norm.weight",
}


def t5_key_to_hf(key: str) -> str:
    """Wan's umT5 encoder key (wan/modules/t5.py) -> transformers' UMT5EncoderModel key."""
    m = re.fullmatch(r"blocks\.(\d+)\.(.+)", key)
    if m is None:
        return _T5_TOP[key]
    return f"encoder.block.{m.group(1)}.{_T5_BLOCK[m.group(2)]}"


def t5_from_wan(state: Tensors):
    """Wan's umT5 encoder weights (a relative position bias per layer) -> a transformers
    UMT5EncoderModel in the weights' dtype (bfloat16 in Wan's file: 11 GB, not 23), its sizes
    read from the weights."""
    from transformers import UMT5Config, UMT5EncoderModel

    if "pos_embedding.embedding.weight" in state:
        raise CheckpointError("a T5 encoder with a shared position bias is not Wan2.1's umT5")
    buckets, heads = state["blocks.0.pos_embedding.embedding.weight"].shape
    vocab, d_model = state["token_embedding.weight"].shape
    config = UMT5Config(
        vocab_size=vocab, d_model=d_model, d_kv=state["blocks.0.attn.q.weight"].shape[0] // heads,
        d_ff=state["blocks.0.ffn.fc1.weight"].shape[0], num_heads=heads,
        num_layers=1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks.")),
        relative_attention_num_buckets=buckets, feed_forward_proj="gated-gelu",
        layer_norm_epsilon=1e-6, dropout_rate=0.0, tie_word_embeddings=False,
    )  # fmt: skip
    with torch.device("meta"):
        model = UMT5EncoderModel(config)
    hf = {t5_key_to_hf(k): v for k, v in state.items()}
    hf["encoder.embed_tokens.weight"] = hf["shared.weight"]
    model.load_state_dict(hf, strict=True, assign=True)
    return model.eval()


def t5_to_wan(model) -> Tensors:
    """A transformers UMT5EncoderModel -> Wan's umT5 encoder weights (to write test folders)."""
    to_wan = {v: k for k, v in _T5_TOP.items()}
    to_wan_block = {v: k for k, v in _T5_BLOCK.items()}
    out = {}
    for key, value in model.state_dict().items():
        m = re.fullmatch(r"encoder\.block\.(\d+)\.(.+)", key)
        if m is not None:
            out[f"blocks.{m.group(1)}.{to_wan_block[m.group(2)]}"] = value.clone()
        elif key in to_wan:
            out[to_wan[key]] = value.clone()
    return out
