"""What a generation costs, known before paying for it: latent shape, tokens, FLOPs, peak memory
and time, for one long sequence or a chain of windows.

- Transformer FLOPs are counted analytically from the block layout (kinema/dit/layers.py):
  matrix products only, 2 m k n each (as torch's FlopCounterMode counts them); norms, RoPE,
  softmax and the other elementwise work are left to the calibrated rate.
- VAE FLOPs, peak activations and kernel counts come from running the real code on the meta
  device (no data, no arithmetic): FlopCounterMode for the convolutions, and a dispatch mode that
  keeps the bytes of live tensors, so chunked decoding and its context are counted as they are.
- Time on this machine: FLOPs over rates measured by `calibrate()` with short real runs of the
  loaded model; on a GPU: FLOPs over its peak FLOP/s at an assumed utilisation.

Assumptions: float32 weights and activations (what kinema runs on CPU); attention is the fused
SDPA kernel that keeps no (N x N) scores (torch 2.13 picks _scaled_dot_product_flash_attention_
for_cpu here, flash or memory-efficient kernels on GPUs); the math path would add the scores,
given as `score_bytes`. A chain is costed as kinema/pipeline/long_clip.py runs it: every
window encodes the prompt, samples and decodes itself whole, and each later one VAE-encodes the
1 + 4 * overlap frames it repeats and the anchor frame.

A Wan2.1 image-to-video model (kinema/pipeline/wan_i2v.py) makes its clip in one window and adds:
its CLIP image encoder (weights, and one forward per image, counted analytically for the
encoder's sizes, Wan's ViT-H/14 unless told), the VAE encoding of the whole conditioning clip
(the image and zeros), the 20 extra input channels and the image tokens' cross-attention.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import statistics
import time
import weakref
from dataclasses import dataclass

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode

from kinema.dit.transformer import DiT, DiTConfig
from kinema.io.frames import to_frames
from kinema.pipeline.long_clip import ChainSettings
from kinema.pipeline.text_to_video import GenerationError, GenerationSettings, TextToVideo
from kinema.pipeline.wan_i2v import wan_images
from kinema.sampling.guidance import ImageCondition, TextCondition, guided_velocity
from kinema.sampling.step_cache import StepCache, interval_full_evaluations
from kinema.vae.causal_vae import CausalVAE, VAEConfig, latent_frames
from kinema.vae.tiling import decode_pieces
from kinema.vae.wan_vae import WanVAE, WanVAEConfig

BYTES = 4  # float32
GPU_LAUNCH_SECONDS = 10e-6  # eager PyTorch: dispatch + launch per kernel, the floor on a GPU
CALIBRATION_PROMPT = "a red circle moving left on a black background"


# ----------------------------------------------------------------------------- arithmetic


def frames_from_seconds(seconds: float, fps: float, temporal_factor: int = 4) -> int:
    """Seconds -> the nearest frame count the VAE takes (1 + 4k), as GenerationSettings does."""
    return 1 + temporal_factor * round(seconds * fps / temporal_factor)


def chain_windows(num_frames: int, window_frames: int, temporal_factor: int = 4) -> list[int]:
    """Frames of each window of a chain, as generate_long makes them: the first window is
    window_frames long; each later one repeats the clip's last tail frames (1 + 4 * overlap)
    and adds up to window_frames - tail new ones, so the last may be shorter."""
    if window_frames > num_frames:
        raise GenerationError(
            f"a window of {window_frames} frames is longer than the clip ({num_frames} frames)"
        )
    chain = ChainSettings(window_frames=window_frames)
    chain.check(temporal_factor)
    sizes, left = [window_frames], num_frames - window_frames
    while left > 0:
        add = min(window_frames - chain.tail_frames, left)
        sizes.append(chain.tail_frames + add)
        left -= add
    return sizes


def dit_flops(
    cfg: DiTConfig, batch: int, grid: tuple[int, int, int], text_tokens: int, micro_inputs: int = 0,
    image_tokens: int = 0,
) -> tuple[int, int]:  # fmt: skip
    """(total, attention) FLOPs of one forward over a patch grid (F', H', W'); attention is
    the N^2 part of self-attention (q k^T and the weighted sum of v). micro_inputs: how many
    of motion and fps are given to a micro-conditioned model; image_tokens: CLIP tokens per
    clip of a Wan I2V model (their own cross-attention keys and values)."""
    n, d, ff = math.prod(grid), cfg.dim, cfg.ffn_dim
    per_token = 2 * (4 * d * d) + 2 * (2 * d * d) + 2 * (2 * d * ff)  # self q k v o, cross q o, MLP
    per_text_token = 2 * (2 * d * d)  # cross-attention k, v (the image's too)
    attention = 4 * n * n * d
    context = text_tokens + image_tokens
    cross_scores = 4 * n * context * d
    blocks = n * per_token + context * per_text_token + attention + cross_scores
    patch = math.prod(cfg.patch)
    embed_and_head = 2 * n * cfg.in_channels * patch * d + 2 * n * d * cfg.out_channels * patch
    text = 2 * text_tokens * (cfg.text_dim * d + d * d)
    timestep = 2 * grid[0] * (cfg.freq_dim * d + d * d + d * 6 * d)  # one per patch-frame
    micro = 2 * micro_inputs * (cfg.freq_dim * d + d * d)
    image = 2 * image_tokens * ((cfg.image_dim or 0) ** 2 + (cfg.image_dim or 0) * d)
    total = batch * (cfg.layers * blocks + embed_and_head + text + timestep + micro + image)
    return total, batch * cfg.layers * attention


@dataclass(frozen=True)
class ImageEncoderSize:
    """A ViT image encoder's sizes (Wan I2V's CLIP), for its FLOPs and weights."""

    dim: int = 1280
    layers: int = 32
    mlp_dim: int = 5120
    patch: int = 14
    image_size: int = 224

    @property
    def tokens(self) -> int:
        """Per image: one per patch and the class token."""
        return (self.image_size // self.patch) ** 2 + 1

    def flops(self, images: int) -> int:
        """Matrix products of `images` forwards; every layer runs (transformers computes the last
        one too, although Wan reads the one before it)."""
        n, d = self.tokens, self.dim
        layer = 2 * n * (4 * d * d + 2 * d * self.mlp_dim) + 4 * n * n * d
        patches = 2 * (n - 1) * 3 * self.patch**2 * d
        return images * (self.layers * layer + patches)

    @property
    def parameter_bytes(self) -> int:
        d, m = self.dim, self.mlp_dim
        layer = 4 * d * d + 4 * d + 2 * d * m + m + d + 4 * d  # attention, MLP, two norms
        embeddings = 3 * self.patch**2 * d + (self.tokens + 1) * d + 4 * d  # and two norms
        return BYTES * (self.layers * layer + embeddings)


WAN21_CLIP = ImageEncoderSize()  # open-clip ViT-H/14 at 224 pixels: 257 tokens of 1280


def step_cache_flops(
    cfg: DiTConfig, grid: tuple[int, int, int], text_tokens: int, stats: dict
) -> tuple[float, float]:
    """(FLOPs run, FLOPs without the cache) of the forwards a StepCache counted (its stats(), in
    rows: one clip through one guidance branch): every row embeds and projects, and runs the
    blocks it ran."""
    full, _ = dit_flops(cfg, 1, grid, text_tokens)
    base, _ = dit_flops(dataclasses.replace(cfg, layers=0), 1, grid, text_tokens)
    per_block = (full - base) / cfg.layers
    run = stats["rows_run"] * base + stats["blocks_run"] * per_block
    return run, stats["rows_total"] * full


def clip_step_cache_flops(t2v: TextToVideo, metadata: dict) -> tuple[float, float]:
    """step_cache_flops of a clip t2v made with a step cache, from the video's metadata (its
    size and length, and the cache's counts added up over its windows)."""
    vae = t2v.vae.cfg
    latent = (latent_frames(metadata["num_frames"], vae.temporal_factor),
              metadata["height"] // vae.spatial_factor, metadata["width"] // vae.spatial_factor)  # fmt: skip
    grid = tuple(n // p for n, p in zip(latent, t2v.dit.cfg.patch, strict=True))
    return step_cache_flops(t2v.dit.cfg, grid, 16, metadata["step_cache"])


# ----------------------------------------------------------------------------- meta traces


class LiveBytes(TorchDispatchMode):
    """Peak bytes of the tensors created inside it and alive at once (inputs and weights not
    counted), and how many ops allocated memory (kernels, roughly). Works on the meta device.

    A 2D convolution on CPU (oneDNN) also holds a transient copy the size of the larger of its
    input and output while it runs (measured with the process's peak RSS on torch 2.13); that
    workspace counts towards the peak."""

    def __init__(self):
        super().__init__()
        self.live = self.peak = self.kernels = 0
        self._storages: dict[int, list[int]] = {}  # storage id -> [tensors holding it, bytes]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {t.untyped_storage()._cdata for t in tree_leaves((args, kwargs)) if _dense(t)}
        allocated = False
        for t in tree_leaves(out):
            if not _dense(t):
                continue
            key = t.untyped_storage()._cdata
            if key in self._storages:
                self._storages[key][0] += 1
            elif key in inputs:
                continue  # a view of a weight or an input
            else:
                nbytes = t.untyped_storage().nbytes()
                self._storages[key] = [1, nbytes]
                self.live += nbytes
                self.peak = max(self.peak, self.live)
                allocated = True
            weakref.finalize(t, self._release, key)
        if func is torch.ops.aten.conv2d.default:
            workspace = max(args[0].untyped_storage().nbytes(), out.untyped_storage().nbytes())
            self.peak = max(self.peak, self.live + workspace)
        self.kernels += allocated
        return out

    def _release(self, key: int) -> None:
        entry = self._storages[key]
        entry[0] -= 1
        if entry[0] == 0:
            self.live -= entry[1]
            del self._storages[key]


def _dense(t) -> bool:
    return isinstance(t, torch.Tensor) and t.layout == torch.strided


@dataclass(frozen=True)
class Trace:
    flops: int
    peak_bytes: int
    kernels: int


def _trace(fn) -> Trace:
    with (
        torch.inference_mode(),
        sdpa_kernel([SDPBackend.FLASH_ATTENTION]),
        FlopCounterMode(display=False) as counter,
        LiveBytes() as live,
    ):
        fn()
    return Trace(counter.get_total_flops(), live.peak, live.kernels)


@functools.lru_cache(maxsize=8)
def _meta_models(dit_cfg: DiTConfig, vae_cfg: VAEConfig) -> tuple[DiT, CausalVAE]:
    with torch.device("meta"):  # kinema's own VAE, or Wan2.1's (a WanVAEConfig)
        vae = WanVAE(vae_cfg) if isinstance(vae_cfg, WanVAEConfig) else CausalVAE(vae_cfg)
        return DiT(dit_cfg).eval(), vae.eval()


def _meta(*shape, dtype=torch.float32) -> torch.Tensor:
    return torch.empty(shape, dtype=dtype, device="meta")


@functools.lru_cache(maxsize=64)
def _trace_step(
    dit_cfg, vae_cfg, latent_shape, text_tokens, guidance, motion, fps, image_tokens=0,
    step_cache=False,
) -> Trace:  # fmt: skip
    """One Euler step of guided sampling: the sampler state and the largest forward.
    image_tokens: CLIP tokens per image of a Wan I2V model. step_cache: the peak is that of a
    full evaluation made while a StepCache holds the last one's block residuals and guidance
    differences (they are renewed as it ends); FLOPs and kernels stay one evaluation's."""
    dit, _ = _meta_models(dit_cfg, vae_cfg)
    cond = TextCondition(_meta(1, text_tokens, dit_cfg.text_dim), _meta(1, text_tokens, dtype=bool))
    x = _meta(*latent_shape)
    image = None
    if wan_images(dit_cfg):
        extra = dit_cfg.in_channels - latent_shape[1]  # the mask and the image's latents
        image = ImageCondition(_meta(wan_images(dit_cfg), image_tokens, dit_cfg.image_dim),
                               _meta(1, extra, *latent_shape[2:]))  # fmt: skip

    def step():  # the text is prepared once per run: traced with the step, as its upper bound
        velocity = guided_velocity(dit, dit_cfg.prediction, cond, cond, guidance, None, motion,
                                   fps, image=image)  # fmt: skip
        return x + (0.5 - 1.0) * velocity(x, 1.0)

    trace = _trace(step)
    if not step_cache:
        return trace

    def steps_with_cache():
        cache = StepCache(None)  # every evaluation in full: each renews what the cache holds
        velocity = guided_velocity(dit, dit_cfg.prediction, cond, cond, guidance, None, motion,
                                   fps, step_cache=cache, image=image)  # fmt: skip
        y = x + (0.5 - 1.0) * velocity(x, 1.0)
        return y + (0.25 - 0.5) * velocity(y, 0.5)

    return Trace(trace.flops, _trace(steps_with_cache).peak_bytes, trace.kernels)


@functools.lru_cache(maxsize=64)
def _trace_decode(dit_cfg, vae_cfg, latent_shape) -> Trace:
    """TextToVideo.decode: piece by piece into uint8 frames (whose T x H x W x 3 bytes, a
    numpy array there, are added to the peak)."""
    _, vae = _meta_models(dit_cfg, vae_cfg)
    z = _meta(*latent_shape)

    def decode():
        for video in decode_pieces(vae, vae.from_model(z)):
            to_frames(video[0])

    trace = _trace(decode)
    _, _, n, h, w = latent_shape
    sf = vae_cfg.spatial_factor
    frames = (1 + vae_cfg.temporal_factor * (n - 1)) * h * sf * w * sf * 3
    return Trace(trace.flops, trace.peak_bytes + frames, trace.kernels)


@functools.lru_cache(maxsize=64)
def _trace_encode(dit_cfg, vae_cfg, frames, height, width) -> Trace:
    _, vae = _meta_models(dit_cfg, vae_cfg)
    video = _meta(1, 3, frames, height, width)
    return _trace(lambda: vae.encode(video))


def parameter_bytes(module: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


# ----------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class Calibration:
    """Rates measured on this machine by `calibrate()`."""

    dense_flops_per_s: float  # the transformer without its N^2 attention part
    attention_flops_per_s: float  # fused attention
    forward_overhead_s: float  # fixed cost of one transformer forward (dispatch, small ops)
    vae_flops_per_s: float
    text_encode_s: float

    def forward_seconds(self, flops: float, attention_flops: float) -> float:
        return (
            self.forward_overhead_s
            + (flops - attention_flops) / self.dense_flops_per_s
            + attention_flops / self.attention_flops_per_s
        )


@dataclass(frozen=True)
class WindowCost:
    """One call of TextToVideo.generate: a whole clip, or one window of a chain."""

    frames: int
    latent_shape: tuple[int, int, int, int]  # (C, T', H', W')
    tokens: int
    dit_flops: int  # one forward, whole batch
    attention_flops: int  # its N^2 part
    vae_flops: int  # the decode, and the encoding of the frames a later window repeats
    activation_bytes: int  # live tensors at the peak of its largest stage
    kernels: int  # ops that allocate, over all its forwards and the VAE
    # one forward that interleaved step caching reuses: the conditional row through the
    # embeddings, the first block and the head (kinema/sampling/step_cache.py)
    reuse_flops: int = 0
    reuse_attention_flops: int = 0


@dataclass(frozen=True)
class CostPlan:
    num_frames: int  # frames of the clip
    windows: tuple[WindowCost, ...]  # one, or the chain's (hierarchical: the keyframes first)
    text_tokens: int
    batch: int  # 2 with classifier-free guidance
    evals_per_window: int  # transformer forwards (steps, or 2 steps - 1 with heun)
    weight_bytes: int
    score_bytes: int  # what (N x N) attention scores would add if materialised
    image_encoder_flops: int = 0  # Wan I2V: CLIP on the image(s), once per clip
    cache_interval: int = 1  # interleaved step caching (its plan is fixed; a threshold's is not)
    reused_per_window: int = 0  # forwards of each window that reuse the cache

    def _forwards(self, w: WindowCost):
        """(count, FLOPs, attention FLOPs) of a window's full and its reused forwards."""
        full = self.evals_per_window - self.reused_per_window
        return ((full, w.dit_flops, w.attention_flops),
                (self.reused_per_window, w.reuse_flops, w.reuse_attention_flops))  # fmt: skip

    @property
    def largest(self) -> WindowCost:
        return max(self.windows, key=lambda w: w.tokens)

    @property
    def sampling_flops(self) -> int:
        return sum(n * f for w in self.windows for n, f, _ in self._forwards(w))

    @property
    def vae_flops(self) -> int:
        return sum(w.vae_flops for w in self.windows)

    @property
    def total_flops(self) -> int:
        return self.sampling_flops + self.vae_flops + self.image_encoder_flops

    @property
    def activation_bytes(self) -> int:
        return max(w.activation_bytes for w in self.windows)

    @property
    def peak_bytes(self) -> int:
        return self.weight_bytes + self.activation_bytes

    def seconds(self, cal: Calibration) -> float:
        """Estimated wall time on the calibrated machine: the prompt is encoded, the latents
        sampled and decoded once per window; an image encoder runs at the transformer's rate."""
        return self.image_encoder_flops / cal.dense_flops_per_s + sum(
            cal.text_encode_s
            + sum(n * cal.forward_seconds(f, a) for n, f, a in self._forwards(w))
            + w.vae_flops / cal.vae_flops_per_s
            for w in self.windows
        )

    def gpu_seconds(self, peak_flops_per_s: float, utilisation: float) -> float:
        """Compute-bound at utilisation x peak, but never below one launch per kernel; the
        prompt's encoding is left out."""
        compute = self.total_flops / (peak_flops_per_s * utilisation)
        return max(compute, sum(w.kernels for w in self.windows) * GPU_LAUNCH_SECONDS)


@functools.lru_cache(maxsize=256)
def _window_cost(
    dit_cfg: DiTConfig, vae_cfg: VAEConfig, s: GenerationSettings, frames: int, repeats: int,
    text_tokens: int, image_tokens: int = 0,
) -> WindowCost:  # fmt: skip
    """repeats: frames of the clip so far this window repeats (0: none; they are encoded, and
    so is the first frame, the anchor). image_tokens: CLIP tokens per image (Wan I2V: its
    conditioning clip, as long as the window, is encoded too)."""
    sf, tf = vae_cfg.spatial_factor, vae_cfg.temporal_factor
    latent = (vae_cfg.latent_channels, latent_frames(frames, tf), s.height // sf, s.width // sf)
    grid = tuple(n // p for n, p in zip(latent[1:], dit_cfg.patch, strict=True))
    batch = 1 if s.guidance == 1.0 else 2
    micro = dit_cfg.micro_conditioning
    motion, fps = (s.motion, s.fps) if micro else (None, None)
    images = wan_images(dit_cfg)
    inputs = (text_tokens, (motion is not None) + (fps is not None), images * image_tokens)
    flops, attention = dit_flops(dit_cfg, batch, grid, *inputs)
    reuse, reuse_attention = dit_flops(dataclasses.replace(dit_cfg, layers=1), 1, grid, *inputs)
    step = _trace_step(dit_cfg, vae_cfg, (1, *latent), text_tokens, s.guidance, motion, fps,
                       image_tokens, s.step_caching)  # fmt: skip
    stages = [_trace_decode(dit_cfg, vae_cfg, (1, *latent))]
    if repeats:
        stages += [_trace_encode(dit_cfg, vae_cfg, n, s.height, s.width) for n in (repeats, 1)]
    if images:
        stages.append(_trace_encode(dit_cfg, vae_cfg, frames, s.height, s.width))
    return WindowCost(
        frames=frames,
        latent_shape=latent,
        tokens=math.prod(grid),
        dit_flops=flops,
        attention_flops=attention,
        vae_flops=sum(t.flops for t in stages),
        activation_bytes=max(t.peak_bytes for t in (step, *stages)),
        kernels=s.evaluations * step.kernels + sum(t.kernels for t in stages),
        reuse_flops=reuse,
        reuse_attention_flops=reuse_attention,
    )


def plan_cost(
    dit_cfg: DiTConfig,
    vae_cfg: VAEConfig,
    settings: GenerationSettings,
    text_tokens: int = 16,
    chained_window_frames: int | None = None,
    text_encoder_bytes: int = 0,
    image_encoder: ImageEncoderSize = WAN21_CLIP,
    keyframes: int | None = None,
) -> CostPlan:
    """The cost of generating `settings` in one sequence, or as a chain of windows of
    chained_window_frames frames; keyframes: hierarchical, a first pass of that many frames
    before the chain (long_clip.keyframe_count; the encodes of the pinned keyframes, a few
    frames each, are left out). text_tokens: prompt length in tokens (16 is a typical prompt
    of the Shapes world; both CFG branches are padded to it). image_encoder: the CLIP of a Wan
    image-to-video model (unused for other models)."""
    images = wan_images(dit_cfg)
    if chained_window_frames is None:
        if keyframes is not None:
            raise GenerationError("hierarchical generation is a chain: give its window")
        sizes = [settings.num_frames]
    elif images:
        raise GenerationError("a Wan2.1 image-to-video model makes its clip in one window")
    else:
        sizes = chain_windows(settings.num_frames, chained_window_frames, vae_cfg.temporal_factor)
    tail = ChainSettings().tail_frames
    image_tokens = image_encoder.tokens if images else 0
    windows = tuple(
        _window_cost(dit_cfg, vae_cfg, settings, n, tail if i else 0, text_tokens, image_tokens)
        for i, n in enumerate(sizes)
    )
    if keyframes is not None:
        key = _window_cost(dit_cfg, vae_cfg, settings, keyframes, 0, text_tokens, image_tokens)
        windows = (key, *windows)
    dit, vae = _meta_models(dit_cfg, vae_cfg)
    batch = 1 if settings.guidance == 1.0 else 2
    image_bytes = image_encoder.parameter_bytes if images else 0
    evals, interval = settings.evaluations, settings.cache_interval
    return CostPlan(
        num_frames=settings.num_frames,
        windows=windows,
        text_tokens=text_tokens,
        batch=batch,
        evals_per_window=evals,
        weight_bytes=parameter_bytes(dit) + parameter_bytes(vae) + text_encoder_bytes + image_bytes,
        score_bytes=2 * batch * dit_cfg.heads * max(w.tokens for w in windows) ** 2 * BYTES,
        image_encoder_flops=image_encoder.flops(images) if images else 0,
        cache_interval=interval,
        reused_per_window=evals - interval_full_evaluations(evals, interval),
    )


# ----------------------------------------------------------------------------- calibration


def _typical_seconds(fns: dict, repeats: int) -> dict:
    """The median wall time of each function over `repeats` rounds (after one warm-up round);
    the functions take turns, so a burst of load elsewhere hits them alike, and the median is
    what a long run meets, lucky moments and stalls aside."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for round_ in range(repeats + 1):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            if round_:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


@torch.inference_mode()
def calibrate(t2v: TextToVideo, repeats: int = 5, text_tokens: int = 16) -> Calibration:
    """Rates of this machine now, from a few short real runs of the loaded model (a second or
    a few on a laptop CPU): the transformer at two small token counts (its fixed cost per
    forward and its dense rate), fused attention alone at 1024 tokens, a VAE decode (64x64,
    17 frames) and the prompt's encoding. CPU only."""
    dit, vae, cfg = t2v.dit, t2v.vae, t2v.dit.cfg
    heads, n = cfg.heads, 1024
    q = torch.randn(2, heads, n, cfg.dim // heads)
    image, image_tokens = None, 0  # a Wan I2V model's CLIP tokens, for each batch entry
    if wan_images(cfg):
        tokens = t2v.image_encoder.tokens if t2v.image_encoder else WAN21_CLIP.tokens
        image = torch.randn(2 * wan_images(cfg), tokens, cfg.image_dim)
        image_tokens = wan_images(cfg) * tokens
    # grids of 8 x 8 patches: 1 frame, and as many frames as ~16 GFLOP a forward allow
    per_frame, _ = dit_flops(cfg, 2, (1, 8, 8), text_tokens, image_tokens=image_tokens)
    grids = [(1, 8, 8), (max(2, min(8, int(16e9 // per_frame))), 8, 8)]
    ctx = torch.randn(2, text_tokens, cfg.text_dim)

    def forward(grid):
        x = torch.randn(2, cfg.in_channels, *(g * p for g, p in zip(grid, cfg.patch, strict=True)))
        t = torch.full((2, x.shape[2]), 0.5)
        return lambda: dit(x, t, ctx, image_context=image)

    z = t2v.prepare_latents(GenerationSettings(num_frames=17, width=64, height=64))
    seconds = _typical_seconds(
        {
            "text": lambda: t2v.encode_prompt(CALIBRATION_PROMPT),
            "attention": lambda: torch.nn.functional.scaled_dot_product_attention(q, q, q),
            "small": forward(grids[0]),
            "large": forward(grids[1]),
            "vae": lambda: t2v.decode(z),
        },
        repeats,
    )
    attention_rate = 4 * 2 * n * n * cfg.dim / seconds["attention"]
    points = []
    for grid, name in zip(grids, ("small", "large"), strict=True):
        flops, attention = dit_flops(cfg, 2, grid, text_tokens, image_tokens=image_tokens)
        points.append((flops - attention, seconds[name] - attention / attention_rate))
    (d1, s1), (d2, s2) = points
    if s2 > s1 > 0:  # seconds = overhead + dense / rate, through both points
        dense_rate = (d2 - d1) / (s2 - s1)
        overhead = max(0.0, s1 - d1 / dense_rate)
    else:  # too noisy to separate: no fixed cost
        dense_rate, overhead = d2 / max(s2, 1e-9), 0.0
    vae_rate = _trace_decode(cfg, vae.cfg, tuple(z.shape)).flops / seconds["vae"]
    return Calibration(dense_rate, attention_rate, overhead, vae_rate, seconds["text"])


# ----------------------------------------------------------------------------- display


def format_flops(flops: float) -> str:
    for unit, scale in (("PFLOP", 1e15), ("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6)):
        if flops >= scale:
            return f"{flops / scale:.3g} {unit}"
    return f"{flops:.0f} FLOP"


def format_bytes(n: float) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:.0f} B"


def format_seconds(s: float) -> str:
    if s < 1:
        return f"{s * 1000:.3g} ms"
    if s < 120:
        return f"{s:.3g} s"
    if s < 7200:
        return f"{s / 60:.3g} min"
    return f"{s / 3600:.3g} h"
