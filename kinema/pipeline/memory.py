"""Where the weights live and in what precision: transformer weights in float16/bfloat16 with
fp32 islands, and offloading (each component on the accelerator only while it works).

- dtype: the transformer's matrices, norms and embeddings of text and patches go to the given
  dtype; the timestep embedding, its projection and the adaLN modulation tables stay float32
  (the fp32 islands, as Wan keeps them), and so do the text whitening, RoPE and the
  normalisation statistics, which the layers compute in float32 anyway. The VAE and the text encoder keep their dtype.
- offload: the text encoder, transformer and VAE wait in main memory and each is moved to the
  device for its stage, then back, so the device holds one of them at a time (plus the
  activations). On a CPU-only machine there is nowhere to move them: a no-op, said in a note.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
ALIASES = {"fp32": "float32", "fp16": "float16", "half": "float16", "bf16": "bfloat16"}
FP32_ISLANDS = (
    "time_embedding", "time_projection", "motion_embedding", "fps_embedding", "text_whitening",
)  # fmt: skip


def parse_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    """ "float16", "fp16", "bfloat16", "bf16", "float32" or a torch dtype -> torch dtype."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    name = ALIASES.get(str(dtype).lower(), str(dtype).lower())
    if name not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose float32, float16 or bfloat16")
    return DTYPES[name]


def cast_dit(dit: nn.Module, dtype: torch.dtype) -> nn.Module:
    """The DiT with its weights in dtype except the fp32 islands (see the module doc)."""
    dit.to(dtype)
    for name in FP32_ISLANDS:
        if hasattr(dit, name):
            getattr(dit, name).float()
    for module in dit.modules():
        if hasattr(module, "modulation") and isinstance(module.modulation, nn.Parameter):
            module.modulation.data = module.modulation.data.float()
    return dit


def module_device(module) -> torch.device:
    """Where a module's (or a TextEncoder's model's) weights are."""
    module = getattr(module, "model", module)
    param = next(module.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


class Placement:
    """The device the work runs on, and whether components visit it only while they work."""

    def __init__(self, device: str | torch.device = "cpu", offload: bool = False):
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {device}: this machine (or this torch build) has no CUDA")
        self.offload = offload and self.device.type != "cpu"
        self.notes: list[str] = []
        if offload and not self.offload:
            self.notes.append(
                "--offload: on a CPU-only machine every component already lives in main "
                "memory, so nothing moves"
            )

    @contextlib.contextmanager
    def working(self, component):
        """component (an nn.Module, or a TextEncoder) on the device for the block's duration;
        back in main memory after it when offloading."""
        if not self.offload:
            yield component
            return
        move_to(component, self.device)
        try:
            yield component
        finally:
            move_to(component, torch.device("cpu"))
            if self.device.type == "cuda":
                torch.cuda.empty_cache()


def move_to(component, device: torch.device) -> None:
    if hasattr(component, "model") and hasattr(component, "device"):  # a TextEncoder
        component.model.to(device)
        component.device = device
    else:
        component.to(device)
