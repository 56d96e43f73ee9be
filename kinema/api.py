"""The Python API: `pipe = kinema.load()` then `video = pipe("a red circle moving left")`.

Modes, all through the one conditioning mechanism (known latent frames):
    pipe(prompt, image=first)                       image-to-video
    pipe(prompt, image=first, last_image=last)      first and last frame
    pipe(prompt, keyframes={0.0: a, 1.5: b})        keyframes at seconds
    pipe(prompt, seconds=20)                        long clip: a chain of windows (kinema-tiny:
                                                    over 33 frames, its one window)
    pipe(prompt, seconds=20, hierarchical=True)     keyframes at 1 fps first, then the rest
    pipe.extend(video, prompt, seconds=2)           continue a clip
    pipe.produce(prompt, ProductionSettings(fps=24, width=256, height=256))   the production pipeline
    pipe(prompt, motion=200)                        motion strength 0..255
Images are arrays (H, W, 3) uint8 or paths. A Wan2.1 image-to-video folder takes its image the
same way, pipe(prompt, image=first) (FLF2V: and last_image=last), and needs it; its transformer
conditions on the image itself (kinema/pipeline/wan_i2v.py). Wan2.1 models (T2V and I2V) take no
known frames: each clip is one window of up to 81 frames (the model's BaseFormat.max_frames), a
longer one is refused, and a Wan T2V model takes no images.

video.frames    (T, H, W, 3) uint8
video.fps       frames per second
video.metadata  prompt, seed, model and every setting
video.save("out.mp4")   H.264 yuv420p via PyAV with the metadata (also .gif, .webm)
video.save_frames("frames/")   one PNG per frame
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from kinema.frame_budget import frames_over_budget
from kinema.models import (
    DEFAULT_MODEL,
    BaseFormat,
    base_format,
    load_components,
    resolve_model,
    sampler_defaults,
)
from kinema.pipeline.conditioning import FrameConditions, fit_image, latent_index
from kinema.pipeline.long_clip import (
    ChainSettings,
    check_single_window,
    extend_frames,
    generate_hierarchical,
    generate_long,
)
from kinema.pipeline.text_to_video import (
    GenerationError,
    GenerationSettings,
    TextToVideo,
    check_prompt,
    check_settings,
    sampler_overrides,
    with_defaults,
)
from kinema.pipeline.wan_i2v import check_wan_images

ImageLike = np.ndarray | str | Path


@dataclass
class Video:
    frames: np.ndarray  # (T, H, W, 3) uint8
    fps: float
    metadata: dict = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return (len(self.frames) - 1) / self.fps if len(self.frames) > 1 else 0.0

    def save(self, path: str | Path) -> Path:
        from kinema.io.video import write_video

        if Path(path).suffix.lower() == ".gif":  # a GIF holds one comment: all of it as JSON
            meta = {"comment": json.dumps(self.metadata)}
        else:
            meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in self.metadata.items()}
        return write_video(path, self.frames, self.fps, metadata=meta)

    def save_frames(self, folder: str | Path) -> list[Path]:
        from kinema.io.images import save_png

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        return [save_png(folder / f"frame_{i:04d}.png", f) for i, f in enumerate(self.frames)]


def _as_image(image: ImageLike) -> np.ndarray:
    if isinstance(image, np.ndarray):
        return image
    from kinema.io.images import load_image

    return load_image(image)


class Pipeline:
    """A loaded model, callable with a prompt."""

    def __init__(self, t2v: TextToVideo, base: BaseFormat | None = None):
        self.t2v = t2v
        self.base = base or BaseFormat()  # where the production pipeline generates

    @property
    def takes_known_frames(self) -> bool:
        """Whether the model continues from known latent frames, so takes images at any frame,
        extends clips and chains windows: kinema's own models were trained with them; Wan2.1's
        were not (BaseFormat.known_frames), and its I2V models take their images through the
        transformer's input instead."""
        return self.base.known_frames and not self.t2v.wan_images

    def long_mode(
        self, s: GenerationSettings, hierarchical: bool = False, pinned: bool = False
    ) -> str:
        """How the clip is made: "one window", "chain" (windows, each continuing the tail of the
        one before: any clip longer than the model's one window, BaseFormat.max_frames) or
        "hierarchical" when asked (keyframes at fps / 8 first, then a chain pinned to them; on
        kinema-tiny its keyframes barely move: README, long clips). A model that cannot chain
        refuses a longer clip here, in one line, before work."""
        if not self.takes_known_frames:
            if hierarchical:
                raise GenerationError(
                    f"{self.t2v.name} makes its clip in one window (it takes no known frames, "
                    "which hierarchical keyframes are): no --hierarchical"
                )
            check_single_window(s.num_frames, s.fps, self.base.max_frames, self.t2v.name)
            return "one window"
        if hierarchical:
            if pinned:
                raise GenerationError(
                    "hierarchical generation takes no images (it makes its own keyframes): "
                    "leave out --hierarchical, or the images"
                )
            return "hierarchical"
        return "chain" if s.num_frames > self.base.max_frames else "one window"

    def settings(
        self,
        seed: int = 0,
        seconds: float | None = None,
        fps: float = 8.0,
        width: int = 64,
        height: int = 64,
        negative_prompt: str = "",
        num_frames: int | None = None,
        motion: float | None = None,
        image_noise: float = 0.0,
        **sampler,
    ) -> GenerationSettings:
        """Checked settings; sampler settings left as None take the defaults."""
        sampler = with_defaults(self.t2v.sampler_defaults, sampler_overrides(**sampler))
        common = dict(width=width, height=height, negative_prompt=negative_prompt, seed=seed,
                      motion=motion, image_noise=image_noise, **sampler)  # fmt: skip
        if num_frames is not None:
            s = GenerationSettings(num_frames=num_frames, fps=fps, **common)
        else:
            s = GenerationSettings.from_seconds(2.0 if seconds is None else seconds, fps, **common)
        check_settings(s, self.t2v.vae, self.t2v.dit)
        return s

    def pinned_images(
        self,
        s: GenerationSettings,
        image: ImageLike | None = None,
        last_image: ImageLike | None = None,
        keyframes: dict[float, ImageLike] | None = None,
        fit: str = "crop",
    ) -> tuple[tuple[tuple[int, np.ndarray], ...], list[str]]:
        """((frame, image) sorted by frame, notes on resizing). Every problem is raised here,
        before any sampling."""
        wanted: list[tuple[int, ImageLike, str]] = []
        if image is not None:
            wanted.append((0, image, "the first image"))
        if last_image is not None:
            if s.num_frames < 2:
                raise GenerationError("a last image needs a clip of more than one frame")
            wanted.append((s.num_frames - 1, last_image, "the last image"))
        for sec, im in sorted((keyframes or {}).items()):
            frame = round(sec * s.fps)
            if not 0 <= frame < s.num_frames:
                raise GenerationError(
                    f"keyframe at {sec:g} s is outside the clip (0 to {(s.num_frames - 1) / s.fps:g} s)"
                )
            wanted.append((frame, im, f"the keyframe at {sec:g} s"))
        if wanted and not self.t2v.wan_images and not self.takes_known_frames:
            raise GenerationError(
                f"{self.t2v.name} takes no images (it was not trained with known frames): leave "
                "out image, last_image and keyframes (--image, --last-image, --keyframe), or use "
                "a model that takes them (a Wan2.1 image-to-video model, or kinema-tiny)"
            )
        groups: dict[int, str] = {}
        pinned, notes = [], []
        for frame, im, what in sorted(wanted, key=lambda w: w[0]):
            group = latent_index(frame)
            if group in groups:
                raise GenerationError(
                    f"{what} and {groups[group]} are closer than 4 frames ({4 / s.fps:g} s); "
                    "the model pins at most one image per 4 frames"
                )
            groups[group] = what
            fitted, note = fit_image(_as_image(im), s.width, s.height, fit)
            if note:
                notes.append(f"{what}: {note}")
            pinned.append((frame, fitted))
        check_wan_images(self.t2v.dit.cfg, FrameConditions(images=tuple(pinned)), s.num_frames,
                         s.image_noise)  # fmt: skip
        return tuple(pinned), notes

    def __call__(
        self,
        prompt: str,
        seed: int = 0,
        seconds: float | None = None,
        fps: float = 8.0,
        width: int = 64,
        height: int = 64,
        steps: int | None = None,
        guidance: float | None = None,
        negative_prompt: str = "",
        solver: str | None = None,
        shift: float | None = None,
        num_frames: int | None = None,
        callback: Callable[[int, int, torch.Tensor], None] | None = None,
        image: ImageLike | None = None,
        last_image: ImageLike | None = None,
        keyframes: dict[float, ImageLike] | None = None,
        fit: str = "crop",
        motion: float | None = None,
        image_noise: float = 0.0,
        hierarchical: bool = False,
        chain: ChainSettings | None = None,
        cache_threshold: float | None = None,
        cache_guidance_every: int | None = None,
        cache_interval: int | None = None,
        eta: float | None = None,
        eta_from: float | None = None,
    ) -> Video:
        """A clip from a prompt, optionally pinned to images. Clips longer than the model's one
        window (self.base.max_frames; kinema-tiny: 33 frames) are chains of windows (or
        hierarchical when asked: long_mode), or refused by a model that cannot chain (Wan2.1).
        callback(step, steps, latents) per sampler step (per window for chains). Step caching
        (kinema/sampling/step_cache.py): cache_threshold reuses blocks (None: off),
        cache_guidance_every k > 1 runs the unconditional branch every k-th step only,
        cache_interval n > 1 runs every n-th step in full and reuses both in between. eta: fresh
        noise in each Euler step, 0 (the ODE) to 1 (ancestral), in the steps that start at flow
        time eta_from or below (kinema-tiny: eta 1 in every step)."""
        check_prompt(prompt)
        chain = chain or ChainSettings()
        s = self.settings(seed, seconds, fps, width, height, negative_prompt, num_frames, motion,
                          image_noise, steps=steps, guidance=guidance, solver=solver, shift=shift,
                          cache_threshold=cache_threshold,
                          cache_guidance_every=cache_guidance_every,
                          cache_interval=cache_interval, eta=eta, eta_from=eta_from)  # fmt: skip
        pinned, notes = self.pinned_images(s, image, last_image, keyframes, fit)
        notes = [*self.t2v.placement.notes, *notes]
        first_cache = len(self.t2v.step_cache_stats)
        mode = self.long_mode(s, hierarchical, bool(pinned))
        cb = None if callback is None else (lambda w, n, j, m: callback(j, m, None))
        extra: dict = {}
        if mode == "hierarchical":
            result, keys = generate_hierarchical(self.t2v, prompt, s, self.base.max_frames,
                                                 chain, cb)  # fmt: skip
            frames, timings = result.frames, result.timings
            extra = {
                "mode": "hierarchical",
                "keyframes": len(keys),
                "window_starts": result.window_starts,
            }
        elif mode == "chain":
            chain.check()
            result = generate_long(self.t2v, prompt, s, chain, pinned, cb)
            frames, timings = result.frames, result.timings
            extra = {"mode": "chain", "window_starts": result.window_starts}
        else:
            conditions = FrameConditions(images=pinned) if pinned else None
            frames, timings = self.t2v.generate(prompt, s, callback, conditions)
            extra = {"mode": "image-to-video" if pinned else "text-to-video"}
        meta = {"prompt": prompt, "model": self.t2v.name, **dataclasses.asdict(s), **extra,
                "pinned_frames": [f for f, _ in pinned], "notes": notes, "timings": timings}  # fmt: skip
        caches = self.t2v.step_cache_stats[first_cache:]
        del self.t2v.step_cache_stats[first_cache:]
        if caches:  # every window's, added up
            settings = {
                "threshold": s.cache_threshold,
                "guidance_every": s.cache_guidance_every,
                "interval": s.cache_interval,
            }
            counts = {k: sum(c[k] for c in caches) for k in caches[0] if k not in settings}
            meta["step_cache"] = {**settings, **counts}
        return Video(frames, s.fps, meta)

    def extend(
        self,
        video: Video | np.ndarray | str | Path,
        prompt: str,
        seconds: float = 2.0,
        seed: int = 0,
        fps: float | None = None,
        fit: str = "crop",
        chain: ChainSettings | None = None,
        callback: Callable[[int, int, torch.Tensor], None] | None = None,
        **kw,
    ) -> Video:
        """The clip followed by `seconds` more (rounded to whole 4-frame groups); its frames are
        kept as they are except the last 4, cross-faded into the continuation."""
        check_prompt(prompt)
        if self.t2v.wan_images:
            raise GenerationError(
                "a Wan2.1 image-to-video model cannot extend a clip (it takes no known frames); "
                "generate from the clip's last frame as --image instead"
            )
        if not self.takes_known_frames:
            raise GenerationError(
                f"{self.t2v.name} cannot extend a clip (it was not trained with known frames); "
                "extend with a model that takes them, such as kinema-tiny"
            )
        chain = chain or ChainSettings()
        if isinstance(video, str | Path):
            from kinema.io.video import read_video

            frames, file_fps, _ = read_video(video)
        elif isinstance(video, Video):
            frames, file_fps = video.frames, video.fps
        else:
            frames, file_fps = video, 8.0
        fps = fps or file_fps
        if not 0 < seconds < float("inf"):
            raise GenerationError(f"seconds to add must be more than 0, got {seconds}")
        new = 4 * max(1, round(seconds * fps / 4))
        h, w = frames.shape[1:3]
        too_long = frames_over_budget(len(frames) + new, w, h, fps)
        if too_long:
            raise GenerationError(f"the extended clip's {too_long}")
        width, height = kw.pop("width", None), kw.pop("height", None)
        s = self.settings(seed, None, fps, width or w, height or h, num_frames=1, **kw)
        notes = []
        if (s.width, s.height) != (w, h):
            frames = np.stack([fit_image(f, s.width, s.height, fit)[0] for f in frames])
            notes.append(f"clip {w}x{h} fitted to {s.width}x{s.height} (--fit {fit})")
        cb = None if callback is None else (lambda wi, n, j, m: callback(j, m, None))
        result = extend_frames(
            self.t2v, frames, prompt, new, s, chain, anchor=frames[0], callback=cb
        )
        meta = {"prompt": prompt, "model": self.t2v.name, **dataclasses.asdict(s),
                "mode": "extension", "extended_from_frames": len(frames),
                "window_starts": result.window_starts, "notes": notes, "timings": result.timings}  # fmt: skip
        return Video(result.frames, fps, meta)

    def produce(self, prompt: str, settings=None, stages=None, **generate) -> Video:
        """The production pipeline around this model (kinema.production.produce): prompt safety
        and expansion, generation at the model's base fps and size, interpolation and upscaling
        to `settings` (a kinema.production.ProductionSettings), safety on every frame, watermark
        and quality report. `generate` goes to `self(...)`: steps, guidance, images, ... Write the
        files, C2PA-signed, with kinema.production.export."""
        from kinema.production import ProductionSettings, produce

        return produce(self, prompt, settings or ProductionSettings(), stages, **generate)


def load(
    model: str | Path = DEFAULT_MODEL,
    device: str = "cpu",
    dtype: str | torch.dtype | None = None,
    offload: bool = False,
):
    """Load a model by name ("kinema-tiny") or folder (kinema's, or a Wan2.1 one in the
    diffusers or the original layout), or any local diffusers video pipeline as
    "diffusers:/path" (kinema/backends/diffusers_pipeline.py).

    dtype: "float16"/"bfloat16" (or a torch dtype) for the transformer's weights, with its fp32
    islands kept (kinema/pipeline/memory.py); None keeps float32. offload: each component goes
    to `device` only while it works (text encoder, transformer, VAE); on CPU nothing moves."""
    from kinema.pipeline.memory import parse_dtype

    dtype = parse_dtype(dtype)
    if str(model).startswith("diffusers:"):
        from kinema.backends.diffusers_pipeline import load_diffusers

        return load_diffusers(model, device, dtype, offload)
    folder = resolve_model(model)
    defaults = sampler_defaults(folder)  # a bad defaults.json is an error before any loading
    encoder, dit, vae = load_components(folder, "cpu")  # then placed (checked) on `device`
    image_encoder = None
    if dit.cfg.image_dim is not None:  # Wan2.1 image-to-video: the folder's CLIP as well
        from kinema.convert.folders import load_wan_image_encoder

        image_encoder = load_wan_image_encoder(folder)
    name = str(model) if not Path(str(model)).is_dir() else folder.name
    t2v = TextToVideo(encoder, dit, vae, name, image_encoder)
    t2v.sampler_defaults = defaults
    t2v.place(device, dtype, offload)
    return Pipeline(t2v, base_format(folder))
