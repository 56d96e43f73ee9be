"""Text to video, in four steps that can each be called alone:

    encode_prompt -> prepare_latents -> sample -> decode

The settings are one frozen dataclass, checked before any work so that a size the VAE and
patching cannot take is refused with the nearest sizes that work.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from kinema.dit.transformer import DiT
from kinema.frame_budget import frames_over_budget
from kinema.io.frames import to_frames
from kinema.pipeline.conditioning import FrameConditions, known_frames
from kinema.pipeline.image_encoder import ClipImageEncoder
from kinema.pipeline.memory import Placement, cast_dit, module_device, move_to
from kinema.pipeline.wan_i2v import check_wan_images, latent_channels, wan_images
from kinema.sampling.guidance import ImageCondition, KnownFrames, TextCondition, guided_velocity
from kinema.sampling.schedules import flow_times, times_from
from kinema.sampling.solvers import SOLVERS
from kinema.sampling.step_cache import StepCache, warmup_evaluations
from kinema.text.encoder import TextEncoder
from kinema.vae.causal_vae import CausalVAE, latent_frames
from kinema.vae.tiling import decode_pieces

MAX_PROMPT_CHARS = 1000


class GenerationError(ValueError):
    """Settings or input that cannot be generated; the message says what would work."""


@dataclass(frozen=True)
class GenerationSettings:
    width: int = 64
    height: int = 64
    num_frames: int = 17
    fps: float = 8.0
    steps: int = 20
    guidance: float = 3.0  # measured best for kinema-tiny on ShapesBench quick (3, 5, 8 tried)
    shift: float = 3.0
    solver: str = "euler"
    # fresh noise in each Euler step (kinema.sampling.solvers.euler): 0 the ODE, 1 ancestral;
    # only in the steps that start at flow time eta_from or below
    eta: float = 0.0
    eta_from: float = 1.0
    negative_prompt: str = ""
    seed: int = 0
    motion: float | None = None  # motion strength 0..255; None lets the model choose
    image_noise: float = 0.0  # flow time of given frames: 0 holds them exactly, more loosens
    # step caching (kinema/sampling/step_cache.py): skip the blocks after the first when the
    # first block's residual changed less than this since the last full step; None: off
    cache_threshold: float | None = None
    # guidance reuse (same file): the unconditional branch runs every k-th step after the
    # protected start, the other steps reuse its difference from the conditional; 1: off
    cache_guidance_every: int = 1
    # interleaved reuse (same file): after the protected start every n-th step runs in full, the
    # steps between reuse its blocks and guidance; 1: off
    cache_interval: int = 1

    @property
    def evaluations(self) -> int:
        """Transformer evaluations of one sampling run: one per Euler step; Heun adds a second
        per step but the last."""
        return self.steps if self.solver == "euler" else 2 * self.steps - 1

    @property
    def step_caching(self) -> bool:
        """Whether sampling reuses work across steps (kinema/sampling/step_cache.py)."""
        reuses = self.cache_guidance_every > 1 or self.cache_interval > 1
        return reuses or self.cache_threshold is not None

    @classmethod
    def from_seconds(cls, seconds: float, fps: float = 8.0, **kw) -> GenerationSettings:
        """Clip length in seconds -> the nearest frame count the VAE takes (1 + 4k)."""
        if (problem := seconds_problem(seconds)) is not None:
            raise GenerationError(problem)
        if not (fps > 0 and math.isfinite(fps)):
            raise GenerationError(f"fps must be positive, got {fps}")
        return cls(num_frames=1 + 4 * round(seconds * fps / 4), fps=fps, **kw)


def seconds_problem(seconds: float) -> str | None:
    """What is wrong with a clip length in seconds (negative, inf, nan), else None."""
    if seconds >= 0 and math.isfinite(seconds):
        return None
    return f"seconds must be 0 (a still image) or more, got {seconds}"


def sampler_overrides(
    steps: int | None = None,
    guidance: float | None = None,
    solver: str | None = None,
    shift: float | None = None,
    cache_threshold: float | None = None,
    cache_guidance_every: int | None = None,
    cache_interval: int | None = None,
    eta: float | None = None,
    eta_from: float | None = None,
) -> dict:
    """The sampler settings a caller gave; the ones left as None keep the defaults above."""
    given = dict(steps=steps, guidance=guidance, solver=solver, shift=shift,
                 cache_threshold=cache_threshold, cache_guidance_every=cache_guidance_every,
                 cache_interval=cache_interval, eta=eta, eta_from=eta_from)  # fmt: skip
    return {k: v for k, v in given.items() if v is not None}


CACHE_KEYS = ("cache_threshold", "cache_guidance_every", "cache_interval")


def with_defaults(defaults: dict, given: dict) -> dict:
    """A model's sampler defaults (kinema.models.sampler_defaults) with a caller's settings
    over them. Step caching is one choice: a caller who names any cache setting replaces the
    model's caching as a whole, so a threshold given meets no default interval, and
    cache_interval=1 alone turns the model's interleaved reuse off. A solver other than Euler
    given without an eta drops the model's eta (it is an Euler setting)."""
    if any(k in given for k in CACHE_KEYS):
        defaults = {k: v for k, v in defaults.items() if k not in CACHE_KEYS}
    if given.get("solver", "euler") != "euler" and "eta" not in given:
        # the model's fresh noise per step is an Euler setting: another solver goes without
        defaults = {k: v for k, v in defaults.items() if k not in ("eta", "eta_from")}
    return {**defaults, **given}


def _nearest(value: int, step: int) -> str:
    lo = max(value // step * step, step)
    return f"{lo} or {lo + step}" if lo != value else str(value)


def check_settings(s: GenerationSettings, vae: CausalVAE, dit: DiT) -> None:
    unit = vae.cfg.spatial_factor * dit.cfg.patch[1]
    problems = []
    for name, v in (("width", s.width), ("height", s.height)):
        if v % unit or v < unit:
            problems.append(
                f"{name} {v} must be a multiple of {unit} (nearest: {_nearest(v, unit)})"
            )
    if s.width * s.height > 1024 * 1024:
        problems.append(f"size {s.width}x{s.height} is larger than this model can hold in memory")
    f = vae.cfg.temporal_factor
    if s.num_frames < 1 or (s.num_frames - 1) % f:
        lo = 1 + max(s.num_frames - 1, 0) // f * f
        problems.append(f"frame count {s.num_frames} must be 1 + {f}k (nearest: {lo} or {lo + f})")
    if not 1 <= s.steps <= 500:
        problems.append(f"steps must be 1..500, got {s.steps}")
    if not 0 <= s.guidance <= 50:
        problems.append(f"guidance must be 0..50, got {s.guidance}")
    if not 0.1 <= s.shift <= 20:
        problems.append(f"shift must be 0.1..20, got {s.shift}")
    if not s.fps > 0:
        problems.append(f"fps must be positive, got {s.fps}")
    too_long = s.fps > 0 and frames_over_budget(s.num_frames, s.width, s.height, s.fps)
    if too_long:
        problems.append(too_long)
    if s.motion is not None and not 0 <= s.motion <= 255:
        problems.append(f"motion must be 0..255, got {s.motion}")
    if s.motion is not None and not dit.cfg.micro_conditioning:
        problems.append("this model has no motion input; leave motion unset")
    if not 0 <= s.image_noise <= 0.5:
        problems.append(f"image noise must be 0..0.5, got {s.image_noise}")
    if s.cache_threshold is not None and not 0 < s.cache_threshold <= 1:
        problems.append(f"cache threshold must be in (0, 1], got {s.cache_threshold}")
    every = s.cache_guidance_every
    if not (isinstance(every, int) and 1 <= every <= 100):
        problems.append(f"cache guidance every must be a whole number 1..100, got {every}")
    interval = s.cache_interval
    if not (isinstance(interval, int) and 1 <= interval <= 100):
        problems.append(f"cache interval must be a whole number 1..100, got {interval}")
    elif interval > 1 and (s.cache_threshold is not None or every != 1):
        problems.append(
            "cache interval decides both reuses itself: leave cache threshold and cache "
            "guidance every unset with it"
        )
    if s.solver not in SOLVERS:
        problems.append(f"unknown solver {s.solver!r}; known: {', '.join(SOLVERS)}")
    if not 0 <= s.eta <= 1:  # also false for nan
        problems.append(f"eta must be 0..1 (0: deterministic, 1: ancestral), got {s.eta}")
    elif s.eta > 0 and s.solver != "euler":
        problems.append(f"eta (fresh noise each step) works with the euler solver, not {s.solver}")
    if not 0 <= s.eta_from <= 1:
        problems.append(f"eta from must be a flow time 0..1, got {s.eta_from}")
    if problems:
        raise GenerationError("; ".join(problems))


def check_prompt(prompt: str) -> str:
    if not isinstance(prompt, str) or not prompt.strip():
        raise GenerationError(
            "the prompt is empty: describe the clip, e.g. 'a red circle moving left'"
        )
    if len(prompt) > MAX_PROMPT_CHARS:
        raise GenerationError(
            f"the prompt has {len(prompt)} characters; the limit is {MAX_PROMPT_CHARS}"
        )
    return prompt.strip()


class TextToVideo:
    """A loaded model: text encoder, transformer and VAE; and the CLIP image encoder of a Wan2.1
    image-to-video model (kinema/pipeline/wan_i2v.py)."""

    def __init__(
        self, text_encoder: TextEncoder, dit: DiT, vae: CausalVAE, name: str = "custom",
        image_encoder: ClipImageEncoder | None = None,
    ):  # fmt: skip
        self.text_encoder = text_encoder
        self.image_encoder = image_encoder
        self.dit = dit.eval().requires_grad_(False)
        self.vae = vae.eval().requires_grad_(False)
        self.name = name
        self.placement = Placement(module_device(self.dit))
        self.decode_tile: int | None = None  # VAE tiles (latent pixels); None: whole frames
        self.step_cache_stats: list[dict] = []  # StepCache.stats() of sample() calls that cached
        self.sampler_defaults: dict = {}  # the model's own (kinema.models.sampler_defaults)

    def place(
        self, device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
        offload: bool = False,
    ) -> None:  # fmt: skip
        """Run on `device`; the transformer's weights in `dtype` (fp32 islands kept); offload:
        each component on the device only while it works (kinema/pipeline/memory.py)."""
        if dtype is not None and dtype != torch.float32:
            cast_dit(self.dit, dtype)
        self.placement = Placement(device, offload)
        if not self.placement.offload:
            for part in (self.text_encoder, self.image_encoder, self.dit, self.vae):
                if part is not None:
                    move_to(part, self.placement.device)

    @property
    def wan_images(self) -> int:
        """Images the transformer itself is conditioned on: 0, or 1 (Wan I2V: the first frame)
        or 2 (Wan FLF2V: the first and the last), which such a model needs."""
        return wan_images(self.dit.cfg)

    def encode_prompt(
        self, prompt: str, negative_prompt: str = ""
    ) -> tuple[TextCondition, TextCondition]:
        with self.placement.working(self.text_encoder):
            states, mask = self.text_encoder([check_prompt(prompt), negative_prompt])
        cond = TextCondition(states[:1, : int(mask[0].sum())], mask[:1, : int(mask[0].sum())])
        uncond = TextCondition(states[1:, : int(mask[1].sum())], mask[1:, : int(mask[1].sum())])
        return cond, uncond

    def latent_shape(self, s: GenerationSettings) -> tuple[int, ...]:
        f, sp = self.vae.cfg.temporal_factor, self.vae.cfg.spatial_factor
        return (
            1,
            self.vae.cfg.latent_channels,
            latent_frames(s.num_frames, f),
            s.height // sp,
            s.width // sp,
        )

    def prepare_latents(self, s: GenerationSettings) -> torch.Tensor:
        """Gaussian noise of the clip's latent shape, from the seed alone (same seed, same noise)."""
        return self.noise_stream(s)[0]

    def noise_stream(self, s: GenerationSettings) -> tuple[torch.Tensor, torch.Generator]:
        """The starting noise and the seed's generator after drawing it, from which a sampler
        with eta > 0 draws its steps' fresh noise: one seed, one clip, and the steps' noise is
        never the starting noise again."""
        gen = torch.Generator().manual_seed(s.seed)
        return torch.randn(self.latent_shape(s), generator=gen), gen

    @torch.inference_mode()
    def sample(
        self,
        noise: torch.Tensor,
        cond: TextCondition,
        uncond: TextCondition,
        s: GenerationSettings,
        callback: Callable[[int, int, torch.Tensor], None] | None = None,
        known: KnownFrames | None = None,
        image: ImageCondition | None = None,
        start_time: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """noise (1, C, F, H, W) -> clean latents. known: frames pinned (kinema's conditioning);
        image: a Wan I2V model's image input (image_condition). start_time below 1: `noise` is
        data already noised to that flow time, and only the rest of the schedule runs (SDEdit;
        benchmarks/noise_commitment.py), without step caching. generator: where the steps'
        fresh noise comes from when s.eta > 0 (default: the seed's, after its starting noise)."""
        times = times_from(flow_times(s.steps, s.shift), start_time)
        if s.step_caching and start_time < 1.0:
            raise GenerationError(
                "step caching plans a whole schedule: turn it off to start part-way"
            )
        cache = None
        if s.step_caching:
            cache = StepCache(s.cache_threshold, warmup_evaluations(s.evaluations, s.cache_interval),
                              s.cache_guidance_every, s.cache_interval)  # fmt: skip
        device = self.placement.device
        cond, uncond = (None if c is None else TextCondition(c.states.to(device), c.mask.to(device))
                        for c in (cond, uncond))  # fmt: skip
        if known is not None:
            known = dataclasses.replace(
                known, latents=known.latents.to(device), frame_mask=known.frame_mask.to(device),
                noise=None if known.noise is None else known.noise.to(device),
            )  # fmt: skip
        if image is not None:
            image = ImageCondition(image.tokens.to(device), image.channels.to(device))
        with self.placement.working(self.dit):
            velocity = guided_velocity(
                self.dit, self.dit.cfg.prediction, cond, uncond, s.guidance, known,
                s.motion, s.fps if self.dit.cfg.micro_conditioning else None, cache, image,
            )  # fmt: skip
            x = noise.to(device)
            x = known.apply(x) if known is not None else x
            stochastic = {}
            if s.eta > 0:
                generator = generator or self.noise_stream(s)[1]
                stochastic = {"eta": s.eta, "generator": generator, "eta_from": s.eta_from}
            x = SOLVERS[s.solver](velocity, x, times, callback, **stochastic)
        if cache is not None:
            self.step_cache_stats.append(cache.stats())
        return known.restore(x) if known is not None else x

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor) -> np.ndarray:
        """Normalised latents (1, C, F, H, W) -> frames (T, H, W, 3) uint8, decoded chunk by
        chunk (and tile by tile, with decode_tile) straight into the frames, so that the
        decoder's memory does not grow with the clip's length (kinema/vae/tiling.py)."""
        f, sf = self.vae.cfg.temporal_factor, self.vae.cfg.spatial_factor
        _, _, n, h, w = latents.shape
        frames = np.empty((1 + f * (n - 1), h * sf, w * sf, 3), dtype=np.uint8)
        done = 0
        with self.placement.working(self.vae):
            z = self.vae.from_model(latents.to(self.placement.device))
            for video in decode_pieces(self.vae, z, self.decode_tile):  # (1, 3, t, H, W)
                piece = to_frames(video[0])
                frames[done : done + piece.shape[0]] = piece.cpu().numpy()
                done += piece.shape[0]
        return frames

    def image_condition(
        self, conditions: FrameConditions | None, s: GenerationSettings
    ) -> ImageCondition:
        """A Wan I2V/FLF2V model's image input: the CLIP tokens of the first (and last) image
        and the mask and latents joined to its input channels (kinema/pipeline/wan_i2v.py)."""
        check_wan_images(self.dit.cfg, conditions, s.num_frames, s.image_noise)
        if self.image_encoder is None:
            raise GenerationError(
                f"model {self.name} is a Wan2.1 image-to-video model loaded without its CLIP "
                "image encoder; load its folder with kinema.load"
            )
        with self.placement.working(self.image_encoder):
            tokens = self.image_encoder([image for _, image in conditions.images])
        with self.placement.working(self.vae):
            channels = latent_channels(self.vae, conditions.images, s.num_frames)
        return ImageCondition(tokens, channels)

    def generate(
        self,
        prompt: str,
        settings: GenerationSettings = GenerationSettings(),
        callback: Callable[[int, int, torch.Tensor], None] | None = None,
        conditions: FrameConditions | None = None,
    ) -> tuple[np.ndarray, dict]:
        """frames (T, H, W, 3) uint8 and timings in seconds per stage. conditions: frames the
        clip must contain (image-to-video, first/last frame, keyframes, a prefix to extend)."""
        check_settings(settings, self.vae, self.dit)
        timings = {}
        t0 = time.perf_counter()
        cond, uncond = self.encode_prompt(prompt, settings.negative_prompt)
        timings["encode_prompt"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        known = image = None
        if self.wan_images:  # the transformer takes the image itself
            image = self.image_condition(conditions, settings)
        elif conditions:
            with self.placement.working(self.vae):
                known = known_frames(self.vae, conditions, self.latent_shape(settings),
                                     settings.num_frames, settings.image_noise, settings.seed)  # fmt: skip
        if image is not None or known is not None:
            timings["encode_frames"] = time.perf_counter() - t0
            t0 = time.perf_counter()
        noise, generator = self.noise_stream(settings)
        latents = self.sample(noise, cond, uncond, settings, callback, known, image,
                              generator=generator)  # fmt: skip
        timings["sample"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        frames = self.decode(latents)
        timings["decode"] = time.perf_counter() - t0
        return frames, timings

    def settings(self, **overrides) -> GenerationSettings:
        return dataclasses.replace(GenerationSettings(), **overrides)
