"""Weights on disk: safetensors with the module's config in the header, so a file says what it
is and a mismatched or corrupt file gives one clear error instead of a shape traceback."""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn


class CheckpointError(ValueError):
    """A weights file that is missing, corrupt, or not the kind of model asked for."""


def save_weights(
    path: str | Path, module: nn.Module, kind: str, config: Any, dtype: torch.dtype | None = None
) -> Path:
    """Write module's state dict (optionally cast to dtype) with its kind and config, atomically."""
    path = Path(path)
    tensors = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).contiguous().cpu()
               for k, v in module.state_dict().items()}  # fmt: skip
    meta = {"kind": kind, "config": json.dumps(dataclasses.asdict(config))}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=meta)
        os.chmod(tmp, 0o644)  # mkstemp makes files private; weights are meant to be shared
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def read_weights(path: str | Path, kind: str) -> tuple[dict[str, torch.Tensor], dict]:
    """(state dict, config dict) of a file written by save_weights for this kind of module."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no weights file at {path}")
    try:
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not a readable safetensors file ({e})") from None
    if meta.get("kind") != kind:
        raise CheckpointError(
            f"{path} holds a {meta.get('kind', 'unknown')!r} model, expected {kind!r}"
        )
    return tensors, json.loads(meta["config"])


def load_into(
    module: nn.Module,
    tensors: dict[str, torch.Tensor],
    path: str | Path,
    may_lack: tuple[str, ...] = (),
) -> nn.Module:
    """Load tensors into module (casting to its dtype); a mismatch is one clear error.
    may_lack: key prefixes the file may lack (new parts of a model that keep their init)."""
    own = module.state_dict()
    missing = sorted(k for k in set(own) - set(tensors) if not k.startswith(may_lack))
    extra = sorted(set(tensors) - set(own))
    wrong = [k for k in own if k in tensors and own[k].shape != tensors[k].shape]
    if missing or extra or wrong:
        detail = (
            (missing and f"missing {missing[:3]}")
            or (extra and f"unexpected {extra[:3]}")
            or f"shape of {wrong[:3]}"
        )
        raise CheckpointError(f"{path} does not match the model's architecture: {detail}")
    module.load_state_dict({k: v.to(own[k].dtype) for k, v in tensors.items()}, strict=False)
    return module
