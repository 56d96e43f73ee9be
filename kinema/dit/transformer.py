"""The diffusion transformer over spacetime patches (Wan2.1 block layout).

Latents (B, C, F, H, W) are cut into patches of (pt, ph, pw), giving N = (F/pt)(H/ph)(W/pw)
tokens for any duration and size; every block attends over all tokens (space and time at once,
3D RoPE), then to the text tokens, then applies its MLP, each modulated by the timestep. The
timestep may differ per latent frame: known frames (image-to-video, keyframes, extension) carry
t = 0 while the rest are noisy, which is the one conditioning mechanism of kinema.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from einops import rearrange
from torch import nn

from kinema.dit.layers import (
    DiTBlock,
    Head,
    ImageEmbedding,
    TextWhitening,
    init_linear,
    sinusoidal_embedding,
    timestep_features,
)
from kinema.dit.rope import rope_rotations
from kinema.sampling.step_cache import StepCache


@dataclass(frozen=True)
class DiTConfig:
    in_channels: int = 16
    out_channels: int = 16
    patch: tuple[int, int, int] = (1, 2, 2)
    dim: int = 256
    ffn_dim: int = 1024
    heads: int = 4
    layers: int = 8
    text_dim: int = 384
    freq_dim: int = 256
    qk_norm: bool = True
    cross_attn_norm: bool = True
    eps: float = 1e-6
    prediction: str = "v"  # what the network outputs: "v" (eps - x0) or "x0"
    # micro-conditioning (as in SVD) on motion strength 0..255 and frame rate; off for Wan
    micro_conditioning: bool = False
    # pooled_text: the masked mean of the text states, embedded and added to the timestep
    # embedding (as SD3's pooled vector), a direct path for clip-wide words such as a direction;
    # off for Wan
    pooled_text: bool = False
    # text_whitening: centre and decorrelate the text states with the training captions'
    # statistics (layers.TextWhitening) before they are embedded; off for Wan
    text_whitening: bool = False
    # Wan conventions, off (None) for kinema's own models:
    # text_len: Wan zero-pads the text states to this many tokens (512) and cross-attends to
    # all of them, padding included, where kinema masks the padding out.
    text_len: int | None = None
    # image_dim: Wan I2V/FLF2V: CLIP image tokens of this width (1280) get their own keys and
    # values in every cross-attention; image_pos_len: FLF2V's learned positions of both images.
    image_dim: int | None = None
    image_pos_len: int | None = None

    def __post_init__(self):
        object.__setattr__(self, "patch", tuple(self.patch))
        if self.dim % self.heads:
            raise ValueError(f"dim {self.dim} must be divisible by heads {self.heads}")
        if self.prediction not in ("v", "x0"):
            raise ValueError(f"prediction must be 'v' or 'x0', got {self.prediction!r}")


@dataclass
class TextContext:
    """The text side of every forward, made once per generation by DiT.prepare_context: per
    block, the cross-attention keys and values of the text (and of the image, Wan I2V), and the
    bias over the keys. Sampling passes it to every step instead of the raw text states."""

    kv: list[tuple[torch.Tensor, torch.Tensor]]  # per block, (B, H, Lt, D) each
    key_bias: torch.Tensor | None  # (B, 1, 1, Lt): bool (attend) or float added to the scores
    image_kv: list[tuple[torch.Tensor, torch.Tensor]] | None = None
    pooled: torch.Tensor | None = None  # (B, dim): embedded pooled text (cfg.pooled_text)


def wan_text_tokens(
    context: torch.Tensor, mask: torch.Tensor | None, text_len: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Wan's text input, compacted. Wan zeroes the padding (mask False), zero-pads the states to
    text_len (512) tokens and attends to all of them; every zero token embeds to the same key and
    value, so m of them weigh as one key whose score is raised by log(m). Returns states
    (B, L' + 1, D): the tokens up to the last non-zero one of the batch, then one zero token; and
    the float bias (B, 1, 1, L' + 1): 0 for a non-zero token, -inf for a zero one (it is
    counted in the last), log(zero tokens) for the last. Equals Wan's 512-token attention up to
    float rounding, at the cost of the prompt's length instead of 512."""
    if context.shape[1] > text_len:
        raise ValueError(f"{context.shape[1]} text tokens, this model takes at most {text_len}")
    if mask is not None:
        context = context * mask[..., None].to(context.dtype)
    nonzero = context.ne(0).any(-1)  # (B, L)
    if context.is_meta:  # no data to look at (cost planning): keep every token given
        keep = context.shape[1]
    else:
        used = nonzero.any(0).nonzero()
        keep = int(used.max()) + 1 if len(used) else 0
    context, nonzero = context[:, :keep], nonzero[:, :keep]
    zeros = (text_len - nonzero.sum(1)).float()  # (B,)
    states = torch.cat([context, context.new_zeros(context.shape[0], 1, context.shape[2])], 1)
    inf = torch.tensor(float("-inf"), device=context.device)
    bias = torch.cat([torch.where(nonzero, 0.0, inf), torch.where(zeros > 0, zeros.log(), inf)[:, None]], 1)  # fmt: skip
    return states, bias[:, None, None, :]


class DiT(nn.Module):
    def __init__(self, cfg: DiTConfig = DiTConfig()):
        super().__init__()
        self.cfg = cfg
        dim = cfg.dim
        self.patch_embedding = nn.Conv3d(
            cfg.in_channels, dim, kernel_size=cfg.patch, stride=cfg.patch
        )
        self.text_embedding = nn.Sequential(
            nn.Linear(cfg.text_dim, dim), nn.GELU(approximate="tanh"), nn.Linear(dim, dim)
        )
        self.time_embedding = nn.Sequential(
            nn.Linear(cfg.freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim)
        )
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        if cfg.micro_conditioning:
            self.motion_embedding = nn.Sequential(
                nn.Linear(cfg.freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim)
            )
            self.fps_embedding = nn.Sequential(
                nn.Linear(cfg.freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim)
            )
        if cfg.pooled_text:
            self.pooled_text_embedding = nn.Sequential(
                nn.Linear(cfg.text_dim, dim), nn.SiLU(), nn.Linear(dim, dim)
            )
        if cfg.text_whitening:
            self.text_whitening = TextWhitening(cfg.text_dim)
        image = cfg.image_dim is not None
        if image:
            self.img_emb = ImageEmbedding(cfg.image_dim, dim, cfg.image_pos_len)
        self.blocks = nn.ModuleList(
            DiTBlock(dim, cfg.ffn_dim, cfg.heads, cfg.qk_norm, cfg.cross_attn_norm, cfg.eps, image)
            for _ in range(cfg.layers)
        )
        self.head = Head(
            dim, cfg.out_channels * cfg.patch[0] * cfg.patch[1] * cfg.patch[2], cfg.eps
        )
        self._init_weights()

    def _init_weights(self) -> None:
        self.apply(init_linear)
        nn.init.xavier_uniform_(self.patch_embedding.weight.flatten(1))
        for seq in (self.text_embedding, self.time_embedding):
            for m in seq:
                if isinstance(m, nn.Linear):
                    nn.init.normal_(m.weight, std=0.02)
        # zero-init: at the start every block's modulation is its learned base alone
        nn.init.zeros_(self.time_projection[1].weight)
        nn.init.zeros_(self.time_projection[1].bias)
        nn.init.zeros_(self.head.head.weight)
        nn.init.zeros_(self.head.head.bias)
        if self.cfg.micro_conditioning:
            # zero output: adding these to trained weights changes nothing until they are learned
            for seq in (self.motion_embedding, self.fps_embedding):
                nn.init.normal_(seq[0].weight, std=0.02)
                nn.init.zeros_(seq[2].weight)
                nn.init.zeros_(seq[2].bias)
        if self.cfg.pooled_text:  # zero output too: fine-tuning starts from the same function
            nn.init.normal_(self.pooled_text_embedding[0].weight, std=0.02)
            nn.init.zeros_(self.pooled_text_embedding[2].weight)
            nn.init.zeros_(self.pooled_text_embedding[2].bias)

    @torch.no_grad()
    def fit_text_whitening(self, states: torch.Tensor) -> None:
        """Whiten the text states with the statistics of these token states (N, text_dim),
        folding the change into the first layers that read them, so the model computes the
        same function as before (a trained model keeps its outputs; training goes on in the
        whitened coordinates)."""
        if not self.cfg.text_whitening:
            raise ValueError("this model has no text whitening (DiTConfig.text_whitening)")
        old_mean, old_matrix = (
            self.text_whitening.mean.double(),
            self.text_whitening.matrix.double(),
        )
        mean, matrix = TextWhitening.statistics(states)
        # old states = new states @ m + c, so a layer reading them takes weight @ m.T and
        # bias + weight @ c
        m = torch.linalg.solve(matrix.double(), old_matrix)
        c = (mean.double() - old_mean) @ old_matrix
        layers = [self.text_embedding[0]]
        if self.cfg.pooled_text:
            layers.append(self.pooled_text_embedding[0])
        for layer in layers:
            weight = layer.weight.double()
            layer.bias.copy_(layer.bias.double() + weight @ c)
            layer.weight.copy_(weight @ m.T)
        self.text_whitening.mean.copy_(mean)
        self.text_whitening.matrix.copy_(matrix)

    def grid(self, latent_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """Patch grid (F', H', W') for latents (F, H, W); raises if they do not divide."""
        out = []
        for size, p, name in zip(
            latent_shape, self.cfg.patch, ("frames", "height", "width"), strict=True
        ):
            if size % p:
                raise ValueError(f"latent {name} {size} is not divisible by the patch size {p}")
            out.append(size // p)
        return tuple(out)

    def _embed(self, embedding: nn.Module, value: torch.Tensor, full_scale: float) -> torch.Tensor:
        """(B,) values -> (B, dim); NaN (not given) -> 0. Features at the timestep's 0..1000
        scale, full_scale -> 1000."""
        given = ~torch.isnan(value)
        feats = sinusoidal_embedding(
            torch.nan_to_num(value) * (1000.0 / full_scale), self.cfg.freq_dim
        )
        return embedding(feats.to(self.time_embedding[0].weight.dtype)) * given[:, None]

    def embed_micro(
        self, motion: torch.Tensor | None, fps: torch.Tensor | None
    ) -> torch.Tensor | None:
        """Motion strength (B,) 0..255 and frame rate (B,) -> (B, dim) added to the time embedding."""
        out = None
        if motion is not None:
            out = self._embed(self.motion_embedding, motion, 255.0)
        if fps is not None:
            e = self._embed(self.fps_embedding, fps, 30.0)
            out = e if out is None else out + e
        return out

    def prepare_context(
        self,
        context: torch.Tensor,
        context_mask: torch.Tensor | None = None,
        image_context: torch.Tensor | None = None,
    ) -> TextContext:
        """Text states (B, Lt, text_dim) and mask (B, Lt) bool -> the TextContext every forward
        of a generation shares (the text embedding and each block's keys and values, made once
        instead of once per step). image_context: (B, Li, image_dim) CLIP tokens, Wan I2V."""
        if self.cfg.text_whitening:
            context = self.text_whitening(context)
        pooled = None
        if self.cfg.pooled_text:
            weight = (
                torch.ones(context.shape[:2], device=context.device)
                if context_mask is None
                else context_mask.to(context.device).float()
            )
            total = weight.sum(1, keepdim=True).clamp(min=1)
            mean = (context.float() * weight[..., None]).sum(1) / total
            pooled = self.pooled_text_embedding(mean.to(self.text_embedding[0].weight.dtype))
        if self.cfg.text_len is not None:
            context, key_bias = wan_text_tokens(context, context_mask, self.cfg.text_len)
            key_bias = key_bias.to(self.text_embedding[0].weight.dtype)
        else:
            key_bias = None if context_mask is None else context_mask[:, None, None, :]
        context = self.text_embedding(context.to(self.text_embedding[0].weight.dtype))
        image = None
        if self.cfg.image_dim is not None:
            if image_context is None:
                raise ValueError("this model (Wan I2V) needs image_context: CLIP image tokens")
            image = self.img_emb(image_context.to(self.text_embedding[0].weight.dtype))
        kv = [block.cross_attn.project_kv(context, image) for block in self.blocks]
        image_kv = [i for _, i in kv] if image is not None else None
        return TextContext([t for t, _ in kv], key_bias, image_kv, pooled)

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        context: torch.Tensor | TextContext,
        context_mask: torch.Tensor | None = None,
        motion: torch.Tensor | None = None,
        fps: torch.Tensor | None = None,
        image_context: torch.Tensor | None = None,
        step_cache: StepCache | None = None,
    ) -> torch.Tensor:
        """
        Args:
            x: (B, C, F, H, W) latents at flow time t.
            t: (B,) one time per clip, or (B, F) one per latent frame, in [0, 1].
            context: (B, Lt, text_dim) text token states; context_mask: (B, Lt) bool. Or the
                TextContext of prepare_context (then context_mask and image_context are unused).
            motion: (B,) motion strength 0..255, NaN where not given; None: not given at all.
            fps: (B,) frames per second of the clip, same convention.
            image_context: (B, Li, image_dim) CLIP image tokens (Wan I2V/FLF2V models only).
            step_cache: reuse the blocks after the first from an earlier step when the first
                block's output changed little (kinema/sampling/step_cache.py).
        Returns:
            (B, C_out, F, H, W): the prediction named by cfg.prediction, float32.
        """
        b = x.shape[0]
        grid = self.grid(tuple(x.shape[2:]))
        dtype = self.patch_embedding.weight.dtype
        # .to(dtype): under mixed-precision training (autocast) the residual stream stays float32
        tokens = rearrange(self.patch_embedding(x.to(dtype)).to(dtype), "b d f h w -> b (f h w) d")
        # one timestep per patch-frame, embedded once; blocks broadcast it over the frame's tokens
        if t.dim() == 1:
            t = t[:, None].expand(b, grid[0])
        elif t.shape[1] != grid[0] * self.cfg.patch[0]:
            raise ValueError(f"t has {t.shape[1]} frames, latents have {x.shape[2]}")
        else:
            t = t[:, :: self.cfg.patch[0]]
        if not isinstance(context, TextContext):
            context = self.prepare_context(context, context_mask, image_context)
        # fp32 island: the timestep embedding and the modulation tables stay float32 even under
        # mixed-precision training (autocast), as in half-precision inference (pipeline/memory.py)
        device = x.device.type
        island = (
            torch.autocast(device, enabled=False)
            if torch.amp.is_autocast_available(device)
            else contextlib.nullcontext()  # meta tensors (kinema plan's FLOP count)
        )
        with island:
            e = self.time_embedding(timestep_features(t, self.cfg.freq_dim))  # (B, F', dim)
            if self.cfg.micro_conditioning:
                micro = self.embed_micro(
                    None if motion is None else motion.to(x.device),
                    None if fps is None else fps.to(x.device),
                )
                if micro is not None:
                    e = e + micro[:, None]
            if context.pooled is not None:
                e = e + context.pooled[:, None].float()
            e0 = self.time_projection(e).unflatten(-1, (6, self.cfg.dim))  # (B, F', 6, dim)
        rope = rope_rotations(self.cfg.dim // self.cfg.heads, grid, x.device)
        image_kv = context.image_kv or [None] * len(self.blocks)

        def run(i: int, tokens: torch.Tensor) -> torch.Tensor:
            return self.blocks[i](tokens, e0, context.kv[i], context.key_bias, rope, image_kv[i])

        if step_cache is None:
            for i in range(len(self.blocks)):
                tokens = run(i, tokens)
        else:
            tokens = step_cache.run(tokens, run, len(self.blocks))
        out = self.head(tokens, e)  # (B, L, pt*ph*pw*C)
        pt, ph, pw = self.cfg.patch
        return rearrange(
            out.float(), "b (f h w) (pt ph pw c) -> b c (f pt) (h ph) (w pw)",
            f=grid[0], h=grid[1], w=grid[2], pt=pt, ph=ph, pw=pw,
        )  # fmt: skip
