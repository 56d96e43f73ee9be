"""A local diffusers video pipeline behind kinema's Pipeline surface:
`kinema.load("diffusers:/path/to/pipeline")` or `--model diffusers:/path/to/pipeline`.

The folder is what `save_pretrained` writes (model_index.json and one folder per component);
nothing is downloaded. Text to video: WanPipeline, LTXPipeline, CogVideoXPipeline,
HunyuanVideoPipeline; image to video: StableVideoDiffusionPipeline (the image is required, the
prompt is not used; `motion` is its motion bucket, `image_noise` its noise augmentation).

The wrapper is called like kinema.api.Pipeline (prompt, seed, seconds, fps, width, height, steps,
guidance, negative_prompt, num_frames, callback, image, ...) and returns a kinema Video, so the
CLI, the production pipeline, ShapesBench and the serving worker run it. The pipeline samples
with its own scheduler: kinema's solvers do not apply (`solver` other than the default is
refused), `shift` sets the scheduler's shift where it has one, and `cache_threshold` turns on
diffusers' FirstBlockCache. What only kinema's own models can do is refused with a message:
last images and keyframes (known latent frames), extension, hierarchical generation, planning.
Clips are generated in one pass, never as chains of windows.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from kinema.checkpoint import CheckpointError
from kinema.pipeline.conditioning import fit_image
from kinema.pipeline.text_to_video import (
    GenerationError,
    GenerationSettings,
    check_prompt,
    sampler_overrides,
    seconds_problem,
)

PREFIX = "diffusers:"
TEXT_TO_VIDEO = ("WanPipeline", "LTXPipeline", "CogVideoXPipeline", "HunyuanVideoPipeline")
IMAGE_TO_VIDEO = ("StableVideoDiffusionPipeline",)
SUPPORTED = TEXT_TO_VIDEO + IMAGE_TO_VIDEO
OWN_ONLY = "needs kinema's own models (known latent frames); a diffusers pipeline cannot"


def is_diffusers_model(model) -> bool:
    return str(model).startswith(PREFIX)


def diffusers_folder(model: str | Path) -> Path:
    """ "diffusers:/path" -> the pipeline folder, checked; a clear error for anything else."""
    folder = Path(str(model).removeprefix(PREFIX))
    index = folder / "model_index.json"
    if not index.is_file():
        raise CheckpointError(f"{folder} is not a diffusers pipeline folder (no model_index.json)")
    name = _read(index).get("_class_name")
    if name not in SUPPORTED:
        raise CheckpointError(
            f"{folder} holds a diffusers {name!r}; kinema runs {', '.join(SUPPORTED)}"
        )
    return folder


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot read {path}: {e}") from None


@dataclass(frozen=True)
class Format:
    """What a pipeline takes, read from its folder's configs (no weights loaded)."""

    pipeline: str  # its class name
    unit: int  # width and height: multiples of this many pixels (VAE factor x patch)
    temporal: int  # frame counts: 1 + temporal * k (1: any count)

    @property
    def image_to_video(self) -> bool:
        return self.pipeline in IMAGE_TO_VIDEO


def pipeline_format(folder: str | Path) -> Format:
    folder = diffusers_folder(folder)
    name = _read(folder / "model_index.json")["_class_name"]
    vae = _read(folder / "vae" / "config.json")
    net = _read(folder / ("unet" if name in IMAGE_TO_VIDEO else "transformer") / "config.json")
    levels = len(vae.get("block_out_channels", ())) - 1
    if name == "WanPipeline":
        down = vae.get("temperal_downsample", [False, True, True])
        spatial = vae.get("scale_factor_spatial") or 2 ** len(down)
        temporal = vae.get("scale_factor_temporal") or 2 ** sum(down)
        patch = net.get("patch_size", (1, 2, 2))[1]
    elif name == "LTXPipeline":
        scaling = sum(vae.get("spatio_temporal_scaling", (True, True, True, False)))
        spatial = vae.get("spatial_compression_ratio") or vae.get("patch_size", 4) * 2**scaling
        temporal = vae.get("temporal_compression_ratio") or vae.get("patch_size_t", 1) * 2**scaling
        patch = net.get("patch_size", 1)
    elif name == "StableVideoDiffusionPipeline":
        spatial, temporal = 2**levels, 1
        patch = 2 ** (len(net.get("block_out_channels", (0,) * 4)) - 1)  # the UNet's halvings
    else:  # CogVideoX, HunyuanVideo
        spatial = vae.get("spatial_compression_ratio") or 2**levels
        temporal = vae.get("temporal_compression_ratio", 4)
        patch = net.get("patch_size", 2)
    return Format(name, int(spatial) * int(patch), int(temporal))


def _defaults(pipe) -> dict:
    """The pipeline's own defaults: steps, guidance (and its argument name)."""
    params = inspect.signature(type(pipe).__call__).parameters
    guidance = "max_guidance_scale" if "max_guidance_scale" in params else "guidance_scale"
    return {
        "steps": params["num_inference_steps"].default,
        "guidance": params[guidance].default,
        "guidance_arg": guidance,
        "params": set(params),
    }


class DiffusersPipeline:
    """A loaded diffusers pipeline with kinema.api.Pipeline's call surface."""

    def __init__(self, pipe, fmt: Format, name: str, device: str | torch.device = "cpu"):
        self.pipe = pipe
        self.format = fmt
        self.name = name
        self.device = torch.device(device)
        self.defaults = _defaults(pipe)
        pipe.set_progress_bar_config(disable=True)

    @property
    def t2v(self):
        raise GenerationError(
            f"{self.name} is a diffusers pipeline: this command works with kinema's own models "
            "(kinema-tiny, Wan2.1 folders), not through diffusers"
        )

    @property
    def has_motion(self) -> bool:
        return self.format.image_to_video  # SVD's motion bucket

    # --------------------------------------------------------------------------- settings

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
        """Checked settings; steps and guidance left as None take the pipeline's defaults."""
        given = sampler_overrides(**sampler)
        f, unit = self.format.temporal, self.format.unit
        if num_frames is None:
            seconds = 2.0 if seconds is None else seconds
            if (problem := seconds_problem(seconds)) is not None:
                raise GenerationError(problem)
            num_frames = 1 + f * round(seconds * fps / f)
        problems = []
        for what, v in (("width", width), ("height", height)):
            if v % unit or v < unit:
                lo = max(v // unit * unit, unit)
                problems.append(f"{what} {v} must be a multiple of {unit} (nearest: {lo} or {lo + unit})")  # fmt: skip
        if num_frames < 1 or (num_frames - 1) % f:
            lo = 1 + max(num_frames - 1, 0) // f * f
            problems.append(f"frame count {num_frames} must be 1 + {f}k (nearest: {lo} or {lo + f})")  # fmt: skip
        steps = given.get("steps", self.defaults["steps"])
        guidance = given.get("guidance", self.defaults["guidance"])
        if not 1 <= steps <= 500:
            problems.append(f"steps must be 1..500, got {steps}")
        if not 0 <= guidance <= 50:
            problems.append(f"guidance must be 0..50, got {guidance}")
        if not fps > 0:
            problems.append(f"fps must be positive, got {fps}")
        if given.get("solver", "euler") != "euler":
            problems.append(
                f"solver {given['solver']!r}: a diffusers pipeline samples with its own "
                f"scheduler ({type(self.pipe.scheduler).__name__}); leave the solver unset"
            )
        if given.get("eta") or given.get("eta_from") is not None:
            problems.append(
                f"eta: a diffusers pipeline samples with its own scheduler "
                f"({type(self.pipe.scheduler).__name__}); leave eta and eta from unset"
            )
        shift = given.get("shift")
        if shift is not None and self._shift_key() is None:
            problems.append(f"{type(self.pipe.scheduler).__name__} has no shift; leave it unset")
        threshold = given.get("cache_threshold")
        if threshold is not None:
            if not 0 < threshold <= 1:
                problems.append(f"cache threshold must be in (0, 1], got {threshold}")
            if not hasattr(getattr(self.pipe, "transformer", None), "enable_cache"):
                problems.append(f"{self.format.pipeline} has no step cache; leave it unset")
        if (given.get("cache_guidance_every") or 1) > 1 or (given.get("cache_interval") or 1) > 1:
            problems.append(
                "guidance reuse runs in kinema's own sampler; a diffusers pipeline cannot: "
                "leave cache guidance every and cache interval unset"
            )
        if motion is not None and not self.has_motion:
            problems.append("this model has no motion input; leave motion unset")
        if motion is not None and not 0 <= motion <= 255:
            problems.append(f"motion must be 0..255, got {motion}")
        if image_noise and not self.format.image_to_video:
            problems.append("image noise applies to image-to-video pipelines; leave it at 0")
        if not 0 <= image_noise <= 0.5:
            problems.append(f"image noise must be 0..0.5, got {image_noise}")
        if problems:
            raise GenerationError("; ".join(problems))
        return GenerationSettings(
            width=width, height=height, num_frames=num_frames, fps=fps, steps=steps,
            guidance=guidance, shift=shift if shift is not None else self._scheduler_shift(),
            solver=type(self.pipe.scheduler).__name__, negative_prompt=negative_prompt,
            seed=seed, motion=motion, image_noise=image_noise, cache_threshold=threshold,
        )  # fmt: skip

    def pinned_images(self, s, image=None, last_image=None, keyframes=None, fit: str = "crop"):
        """((0, first image),) for image-to-video pipelines; what they cannot take is refused."""
        if last_image is not None or keyframes:
            raise GenerationError(f"a last image or keyframes {OWN_ONLY}")
        if self.format.image_to_video and image is None:
            raise GenerationError(
                f"{self.format.pipeline} makes video from an image: give one (--image)"
            )
        if image is None:
            return (), []
        if not self.format.image_to_video:
            raise GenerationError(
                f"{self.format.pipeline} is text-to-video; image-to-video through diffusers "
                "needs a StableVideoDiffusionPipeline (or use kinema's own models)"
            )
        if not isinstance(image, np.ndarray):
            from kinema.io.images import load_image

            image = load_image(image)
        fitted, note = fit_image(image, s.width, s.height, fit)
        return ((0, fitted),), [f"the first image: {note}"] if note else []

    # --------------------------------------------------------------------------- generation

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
        image=None,
        last_image=None,
        keyframes=None,
        fit: str = "crop",
        motion: float | None = None,
        image_noise: float = 0.0,
        hierarchical: bool = False,
        chain=None,
        cache_threshold: float | None = None,
        cache_guidance_every: int | None = None,
        cache_interval: int | None = None,
        eta: float | None = None,
        eta_from: float | None = None,
    ):
        """A clip from a prompt (and an image, for image-to-video pipelines), as a kinema Video.
        chain is accepted and unused: the pipeline makes the whole clip in one pass."""
        from kinema.api import Video

        check_prompt(prompt)
        if hierarchical:
            raise GenerationError(f"hierarchical generation {OWN_ONLY}")
        s = self.settings(seed, seconds, fps, width, height, negative_prompt, num_frames, motion,
                          image_noise, steps=steps, guidance=guidance, solver=solver, shift=shift,
                          cache_threshold=cache_threshold,
                          cache_guidance_every=cache_guidance_every,
                          cache_interval=cache_interval, eta=eta, eta_from=eta_from)  # fmt: skip
        pinned, notes = self.pinned_images(s, image, last_image, keyframes, fit)
        if self.format.image_to_video:
            notes.append(f"{self.format.pipeline} does not read the prompt")
        elif negative_prompt and not self._takes_negative():
            notes.append(f"{self.format.pipeline} does not use the negative prompt here")
        start = time.perf_counter()
        with self._scheduler(shift), self._cache(cache_threshold):
            out = self.pipe(**self._call_args(s, pinned, prompt, callback))
        seconds_taken = time.perf_counter() - start
        frames = np.asarray(out.frames[0], dtype=np.float32)  # (T, H, W, 3) in [0, 1]
        frames = (frames.clip(0, 1) * 255).round().astype(np.uint8)
        mode = "image-to-video" if pinned else "text-to-video"
        meta = {"prompt": prompt, "model": self.name, **dataclasses.asdict(s), "mode": mode,
                "backend": "diffusers", "pipeline": self.format.pipeline,
                "pinned_frames": [f for f, _ in pinned], "notes": notes,
                "timings": {"generate": seconds_taken}}  # fmt: skip
        meta["num_frames"] = len(frames)
        return Video(frames, s.fps, meta)

    def _call_args(self, s: GenerationSettings, pinned, prompt: str = "", callback=None) -> dict:
        """The pipeline's keyword arguments for these settings."""
        from PIL import Image

        params = self.defaults["params"]
        args = dict(
            height=s.height, width=s.width, num_frames=s.num_frames, num_inference_steps=s.steps,
            generator=torch.Generator("cpu").manual_seed(s.seed), output_type="np",
        )  # fmt: skip
        args[self.defaults["guidance_arg"]] = s.guidance
        if self.format.image_to_video:
            args.update(image=Image.fromarray(pinned[0][1]), fps=max(1, round(s.fps)),
                        motion_bucket_id=int(round(127 if s.motion is None else s.motion)),
                        noise_aug_strength=s.image_noise, min_guidance_scale=1.0,
                        decode_chunk_size=8)  # fmt: skip
        else:
            args["prompt"] = prompt
            if self._takes_negative():
                args["negative_prompt"] = s.negative_prompt
            if "frame_rate" in params:  # LTX
                args["frame_rate"] = s.fps
            transformer = getattr(self.pipe, "transformer", None)
            max_text = getattr(getattr(transformer, "config", None), "max_text_seq_length", None)
            if max_text is not None:  # CogVideoX: its positional table fixes the text length
                args["max_sequence_length"] = max_text
        if callback is not None:

            def on_step(pipe, i, t, kwargs):
                callback(i + 1, s.steps, kwargs.get("latents"))
                return kwargs

            args.update(callback_on_step_end=on_step, callback_on_step_end_tensor_inputs=["latents"])  # fmt: skip
        return args

    def _takes_negative(self) -> bool:
        """HunyuanVideo's guidance is distilled (embedded): its negative prompt would need its
        true CFG, which kinema does not turn on."""
        params = self.defaults["params"]
        return "negative_prompt" in params and "true_cfg_scale" not in params

    def _shift_key(self) -> str | None:
        config = self.pipe.scheduler.config
        return next((k for k in ("shift", "flow_shift") if k in config), None)

    def _scheduler_shift(self) -> float | None:
        key = self._shift_key()
        return None if key is None else float(self.pipe.scheduler.config[key])

    @contextlib.contextmanager
    def _scheduler(self, shift: float | None):
        """The pipeline's scheduler with another shift for one call."""
        original = self.pipe.scheduler
        if shift is not None:
            self.pipe.scheduler = type(original).from_config(original.config, **{self._shift_key(): shift})  # fmt: skip
        try:
            yield
        finally:
            self.pipe.scheduler = original

    @contextlib.contextmanager
    def _cache(self, threshold: float | None):
        """diffusers' FirstBlockCache on the transformer for one call."""
        if threshold is None:
            yield
            return
        from diffusers import FirstBlockCacheConfig

        self.pipe.transformer.enable_cache(FirstBlockCacheConfig(threshold=threshold))
        try:
            yield
        finally:
            self.pipe.transformer.disable_cache()

    # --------------------------------------------------------------------------- the rest

    def extend(self, *args, **kwargs):
        raise GenerationError(f"extending a clip {OWN_ONLY}")

    def produce(self, prompt: str, settings=None, stages=None, **generate):
        """The production pipeline around this model (see kinema.api.Pipeline.produce)."""
        from kinema.production import ProductionSettings, produce

        return produce(self, prompt, settings or ProductionSettings(), stages, **generate)


def load_diffusers(
    model: str | Path,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    offload: bool = False,
) -> DiffusersPipeline:
    """A local diffusers pipeline ("diffusers:/path" or the path) as a kinema pipeline. dtype:
    the weights' dtype (None: as saved); offload on an accelerator: diffusers' model CPU offload
    (each component on the device only while it runs); on CPU it changes nothing."""
    from diffusers import DiffusionPipeline

    folder = diffusers_folder(model)
    fmt = pipeline_format(folder)
    kwargs = {"local_files_only": True}
    if dtype is not None:
        kwargs["torch_dtype"] = dtype
    try:
        pipe = DiffusionPipeline.from_pretrained(folder, **kwargs)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot load the diffusers pipeline in {folder}: {e}") from None
    device = torch.device(device)
    if offload and device.type != "cpu":
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    return DiffusersPipeline(pipe, fmt, f"{PREFIX}{folder.name}", device)
