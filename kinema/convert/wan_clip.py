"""Wan2.1's CLIP image encoder in the original layout -> transformers' CLIPVisionModel.

models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth holds Wan's open-clip XLM-RoBERTa text
tower and ViT-H/14 vision tower (wan/modules/clip.py, keys textual.* and visual.*). Image-to-video
uses the vision tower only, up to its second-to-last block, which is transformers'
hidden_states[-2]. The file holds no config: the sizes are read from the weights; the head count
is ViT-H/14's (16, which the weights do not show), the activation exact GELU, the norms' eps 1e-5.
"""

from __future__ import annotations

import math
import re

import torch

from kinema.checkpoint import CheckpointError

Tensors = dict[str, torch.Tensor]
WAN_CLIP_HEADS = 16  # ViT-H/14: 1280 wide, heads of 80

_LAYER = {  # Wan's AttentionBlock -> CLIPEncoderLayer (the fused to_qkv is split apart)
    "norm1": "layer_norm1",
    "attn.proj": "self_attn.out_proj",
    "norm2": "layer_norm2",
    "mlp.0": "mlp.fc1",
    "mlp.2": "mlp.fc2",
}
_TOP = {"pre_norm": "pre_layrnorm", "post_norm": "post_layernorm"}


def clip_vision_from_wan(state: Tensors):
    """Wan's CLIP weights (visual.* used, the rest ignored) -> a transformers CLIPVisionModel in
    the weights' dtype, its sizes read from the weights."""
    from transformers import CLIPVisionConfig, CLIPVisionModel

    visual = {k.removeprefix("visual."): v for k, v in state.items() if k.startswith("visual.")}
    if "cls_embedding" not in visual or "patch_embedding.bias" in visual:
        raise CheckpointError("not Wan2.1's CLIP: no visual.cls_embedding, or a patch bias")
    dim, patch = visual["cls_embedding"].shape[-1], visual["patch_embedding.weight"].shape[-1]
    grid = math.isqrt(visual["pos_embedding"].shape[1] - 1)
    layers = 1 + max(int(k.split(".")[1]) for k in visual if k.startswith("transformer."))
    config = CLIPVisionConfig(
        hidden_size=dim, intermediate_size=visual["transformer.0.mlp.0.weight"].shape[0],
        num_hidden_layers=layers, num_attention_heads=WAN_CLIP_HEADS, image_size=grid * patch,
        patch_size=patch, hidden_act="gelu", layer_norm_eps=1e-5,
    )  # fmt: skip
    hf = {
        "embeddings.class_embedding": visual["cls_embedding"].reshape(dim),
        "embeddings.patch_embedding.weight": visual["patch_embedding.weight"],
        "embeddings.position_embedding.weight": visual["pos_embedding"][0],
    }
    for key, value in visual.items():
        top = re.fullmatch(r"(pre_norm|post_norm)\.(weight|bias)", key)
        block = re.fullmatch(r"transformer\.(\d+)\.(.+)\.(weight|bias)", key)
        if top:
            hf[f"{_TOP[top.group(1)]}.{top.group(2)}"] = value
        elif block and block.group(2) == "attn.to_qkv":
            for name, part in zip(("q", "k", "v"), value.chunk(3), strict=True):
                hf[f"encoder.layers.{block.group(1)}.self_attn.{name}_proj.{block.group(3)}"] = part
        elif block and block.group(2) in _LAYER:
            hf[f"encoder.layers.{block.group(1)}.{_LAYER[block.group(2)]}.{block.group(3)}"] = value
    with torch.device("meta"):  # no random init of weights about to be replaced
        model = CLIPVisionModel(config)
    try:
        model.load_state_dict(hf, strict=True, assign=True)
    except RuntimeError as e:
        raise CheckpointError(f"Wan2.1's CLIP weights do not fit a ViT: {e}") from None
    positions = model.embeddings.position_ids  # a buffer no file holds: made again, off meta
    model.embeddings.position_ids = torch.arange(positions.shape[1])[None]
    return model.eval()


def clip_vision_to_wan(model) -> Tensors:
    """A transformers CLIPVisionModel -> Wan's visual.* weights (to write test folders)."""
    s = {k.removeprefix("vision_model."): v for k, v in model.state_dict().items()}
    dim = s["embeddings.class_embedding"].shape[0]
    out = {
        "visual.cls_embedding": s["embeddings.class_embedding"].reshape(1, 1, dim),
        "visual.patch_embedding.weight": s["embeddings.patch_embedding.weight"],
        "visual.pos_embedding": s["embeddings.position_embedding.weight"][None],
    }
    for ours, theirs in _TOP.items():
        for kind in ("weight", "bias"):
            out[f"visual.{ours}.{kind}"] = s[f"{theirs}.{kind}"]
    for i in range(model.config.num_hidden_layers):
        layer = f"encoder.layers.{i}"
        for kind in ("weight", "bias"):
            qkv = [s[f"{layer}.self_attn.{n}_proj.{kind}"] for n in ("q", "k", "v")]
            out[f"visual.transformer.{i}.attn.to_qkv.{kind}"] = torch.cat(qkv)
            for ours, theirs in _LAYER.items():
                out[f"visual.transformer.{i}.{ours}.{kind}"] = s[f"{layer}.{theirs}.{kind}"]
    return {k: v.clone().contiguous() for k, v in out.items()}
