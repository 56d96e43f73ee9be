"""Building blocks of the diffusion transformer, named as in Wan2.1 so its checkpoints load
into the same classes: RMSNorm, self- and cross-attention with RMS-normed q/k, the MLP, the
timestep embedding, and the block with adaLN shift/scale/gate modulation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from kinema.dit.rope import apply_rope


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        x32 = x.float()
        return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(
            x
        ) * self.weight


def sinusoidal_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """(...,) timesteps in [0, 1000] -> (..., dim) float32 [cos, sin] features (fp32 island)."""
    half = dim // 2
    freqs = torch.pow(10000.0, -torch.arange(half, dtype=torch.float64, device=t.device) / half)
    angles = t.double()[..., None] * freqs
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1).float()


def attention(q, k, v, key_bias: torch.Tensor | None = None) -> torch.Tensor:
    """q (B, Lq, H, D), k/v (B, H, Lk, D) (SDPA's layout, as project_kv gives them),
    key_bias (B, 1, 1, Lk): bool (True: attend) or float added to the scores -> (B, Lq, H*D)."""
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k, v, attn_mask=key_bias)
    return rearrange(out, "b h l d -> b l (h d)")  # a view when out is (B, L, H, D) in memory


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, qk_norm: bool = True, eps: float = 1e-6):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.norm_q = RMSNorm(dim, eps) if qk_norm else nn.Identity()
        self.norm_k = RMSNorm(dim, eps) if qk_norm else nn.Identity()

    def split(self, t: torch.Tensor) -> torch.Tensor:
        return t.unflatten(-1, (self.heads, -1))  # (B, L, dim) -> (B, L, H, D), a view

    def forward(self, x, rope: torch.Tensor):  # x (B, L, dim), rope (L, 1, D/2) complex
        q = apply_rope(self.split(self.norm_q(self.q(x))), rope)
        k = apply_rope(self.split(self.norm_k(self.k(x))), rope)
        return self.o(attention(q, k.transpose(1, 2), self.split(self.v(x)).transpose(1, 2)))


class CrossAttention(SelfAttention):
    """Queries from the video tokens, keys and values from the text (same layers as Wan's).
    image=True (Wan I2V): the image tokens get their own keys and values (k_img, v_img) and the
    two attentions' outputs are summed before the output projection. The keys and values of the
    text (and image) do not depend on the video: project_kv makes them once per generation."""

    def __init__(
        self, dim: int, heads: int, qk_norm: bool = True, eps: float = 1e-6, image: bool = False
    ):
        super().__init__(dim, heads, qk_norm, eps)
        if image:
            self.k_img, self.v_img = nn.Linear(dim, dim), nn.Linear(dim, dim)
            self.norm_k_img = RMSNorm(dim, eps) if qk_norm else nn.Identity()

    def project_kv(self, context: torch.Tensor, image: torch.Tensor | None = None) -> tuple:
        """context (B, Lt, dim), image (B, Li, dim) or None -> ((k, v), (k_img, v_img) or None),
        each (B, H, L, D), contiguous."""
        heads = lambda t: self.split(t).transpose(1, 2).contiguous()  # noqa: E731
        text = heads(self.norm_k(self.k(context))), heads(self.v(context))
        if image is None:
            return text, None
        return text, (heads(self.norm_k_img(self.k_img(image))), heads(self.v_img(image)))

    def forward(self, x, kv, key_bias=None, image_kv=None):
        """x (B, L, dim); kv, image_kv from project_kv; key_bias (B, 1, 1, Lt)."""
        q = self.split(self.norm_q(self.q(x)))
        out = attention(q, *kv, key_bias)
        if image_kv is not None:
            out = out + attention(q, *image_kv)
        return self.o(out)


class ImageEmbedding(nn.Module):
    """Wan I2V's projection of CLIP image tokens (B, Li, image_dim) -> (B, Li, dim), named as in
    Wan (img_emb.proj). pos_len (FLF2V): the first and last images' tokens, given as a batch of
    2B, are joined into B sequences of 2 Li tokens with learned positions (emb_pos)."""

    def __init__(self, image_dim: int, dim: int, pos_len: int | None = None):
        super().__init__()
        self.proj = nn.Sequential(
            nn.LayerNorm(image_dim), nn.Linear(image_dim, image_dim), nn.GELU(),
            nn.Linear(image_dim, dim), nn.LayerNorm(dim),
        )  # fmt: skip
        if pos_len is not None:
            self.emb_pos = nn.Parameter(torch.zeros(1, pos_len, image_dim))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if hasattr(self, "emb_pos"):
            image = image.reshape(-1, 2 * image.shape[1], image.shape[2]) + self.emb_pos
        return self.proj(image)


class TextWhitening(nn.Module):
    """Centres and decorrelates the frozen text encoder's token states (ZCA whitening) with
    statistics of the training captions: x -> (x - mean) @ matrix, identity until fitted.
    MiniLM's states share a strong common part, so words that matter can differ little: a
    caption with "right" instead of "left" moves the mean state by 19%, "blue" for "red" by
    59%; whitened, 45% and 78%. A toy DiT learning direction words (benchmarks/direction_toy.py)
    reads them much sooner on whitened states: after 1,000 steps its loss with the mirrored
    caption is 1.38x its loss with the own caption, against 1.009x on the raw states."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("matrix", torch.eye(dim))

    @property
    def fitted(self) -> bool:
        return not torch.equal(self.matrix, torch.eye(len(self.matrix), device=self.matrix.device))

    @staticmethod
    def statistics(states: torch.Tensor, floor: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
        """Token states (N, dim) -> (mean, matrix). Eigenvalues below floor x their mean are
        raised to it, so directions the captions never use are not blown up."""
        states = states.double()
        mean = states.mean(0)
        values, vectors = torch.linalg.eigh(torch.cov((states - mean).T))
        values = values.clamp(min=0) + floor * values.mean()
        return mean.float(), (vectors @ torch.diag(values.rsqrt()) @ vectors.T).float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() - self.mean) @ self.matrix


def modulation_param(dim: int, n: int) -> nn.Parameter:
    """The learned base of adaLN: added to the timestep projection, it gives n vectors."""
    return nn.Parameter(torch.randn(1, n, dim) / dim**0.5)


def modulate(base: nn.Parameter, e: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """base (1, n, dim) + e (B, F, n, dim) per-frame projections -> n tensors (B, F, 1, dim),
    float32, ready to broadcast over the tokens of each frame."""
    return (base.float() + e.float()).unsqueeze(2).unbind(dim=3)


def per_frame(x: torch.Tensor, frames: int, fn) -> torch.Tensor:
    """Apply fn to tokens (B, L, dim) viewed as (B, F, L/F, dim), where per-frame modulation
    broadcasts without copying it to every token."""
    b, length, dim = x.shape
    return fn(x.view(b, frames, length // frames, dim)).reshape(b, length, dim)


class DiTBlock(nn.Module):
    def __init__(
        self,
        dim: int,
        ffn_dim: int,
        heads: int,
        qk_norm: bool,
        cross_attn_norm: bool,
        eps: float,
        image: bool = False,
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps, elementwise_affine=False)
        self.self_attn = SelfAttention(dim, heads, qk_norm, eps)
        self.norm3 = (
            nn.LayerNorm(dim, eps, elementwise_affine=True) if cross_attn_norm else nn.Identity()
        )
        self.cross_attn = CrossAttention(dim, heads, qk_norm, eps, image)
        self.norm2 = nn.LayerNorm(dim, eps, elementwise_affine=False)
        self.ffn = nn.Sequential(
            nn.Linear(dim, ffn_dim), nn.GELU(approximate="tanh"), nn.Linear(ffn_dim, dim)
        )
        self.modulation = modulation_param(dim, 6)

    def forward(self, x, e, kv, key_bias, rope, image_kv=None):
        """x (B, L, dim) tokens in frame order; e (B, F, 6, dim) timestep projections per frame;
        kv (and image_kv, Wan I2V) this block's text keys and values (CrossAttention.project_kv),
        key_bias (B, 1, 1, Lt); rope (L, 1, D/2) complex rotations."""
        frames = e.shape[1]
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = modulate(
            self.modulation, e
        )
        h = per_frame(self.norm1(x).float(), frames, lambda t: t * (1 + scale_msa) + shift_msa)
        y = self.self_attn(h.type_as(x), rope).float()
        x = x + per_frame(y, frames, lambda t: t * gate_msa).type_as(x)
        x = x + self.cross_attn(self.norm3(x), kv, key_bias, image_kv)
        h = per_frame(self.norm2(x).float(), frames, lambda t: t * (1 + scale_mlp) + shift_mlp)
        y = self.ffn(h.type_as(x)).float()
        return x + per_frame(y, frames, lambda t: t * gate_mlp).type_as(x)


class Head(nn.Module):
    def __init__(self, dim: int, out_dim: int, eps: float):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps, elementwise_affine=False)
        self.head = nn.Linear(dim, out_dim)
        self.modulation = modulation_param(dim, 2)
        nn.init.zeros_(self.head.weight)  # the untrained model predicts zero
        nn.init.zeros_(self.head.bias)

    def forward(self, x, e):  # e (B, F, dim): the timestep embedding before projection
        shift, scale = modulate(self.modulation, e[:, :, None, :])
        h = per_frame(self.norm(x).float(), e.shape[1], lambda t: t * (1 + scale) + shift)
        return self.head(h.type_as(x))


def init_linear(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def timestep_features(t: torch.Tensor, freq_dim: int) -> torch.Tensor:
    """Flow time in [0, 1] -> sinusoidal features at the 0..1000 scale Wan uses."""
    return sinusoidal_embedding(t * 1000.0, freq_dim)
