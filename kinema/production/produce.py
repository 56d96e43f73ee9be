"""The production pipeline: prompt in, a finished clip out, every stage recorded.

    prompt safety -> expansion -> base generation (the model's own fps and size)
    -> temporal upsampling to the target fps -> super-resolution to the target size
    -> safety on every frame and on the clip -> invisible watermark -> quality report

`produce` returns a `kinema.api.Video` whose metadata names what ran (expander, interpolator,
upscaler, classifiers) and what came of it (expanded prompt, watermark payload, quality, seconds
per stage). `kinema.production.export` writes the files. Every stage is pluggable through
`Stages`: a learned interpolator or upscaler is any object with a `name` and the same `__call__`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kinema.api import Pipeline, Video
from kinema.checkpoint import CheckpointError
from kinema.frame_budget import frames_over_budget
from kinema.models import BaseFormat
from kinema.pipeline.text_to_video import GenerationError, check_prompt, seconds_problem
from kinema.production import watermark as wm
from kinema.production.expand import (
    DEFAULT_NEGATIVE_PROMPT,
    ChatExpander,
    Expander,
    ShapesExpander,
)
from kinema.production.interpolate import (
    Interpolator,
    make_interpolator,
    retime,
    retime_positions,
)
from kinema.production.policy import (
    DEFAULT_POLICY,
    PromptClassifier,
    SafetyPolicy,
    check_prompt_safety,
    load_policy,
    prompt_classifiers,
)
from kinema.production.report import quality_report
from kinema.production.safety import ClipClassifier, FrameClassifier, check_output, classifiers_for
from kinema.production.upscale import Upscaler, make_upscaler

MAX_FPS = 120.0
MAX_SIDE = 2048


@dataclass(frozen=True)
class ProductionSettings:
    """What to make. fps, width and height are the output's; the model generates at its base
    format (the pipeline's `base`, kinema.models.BaseFormat) and the pipeline upsamples."""

    fps: float = 8.0
    width: int = 64
    height: int = 64
    seconds: float = 2.0
    seed: int = 0
    negative_prompt: str | None = None  # None: DEFAULT_NEGATIVE_PROMPT
    expand: bool = True
    watermark: bool = True
    generation_id: str | None = None  # None: derived from the model, prompt, seed and settings

    def check(self, base: BaseFormat | None = None) -> None:
        """Every problem with these settings in one GenerationError, before any work; the
        output's frames are checked against memory at the size and rate asked for, which the
        base clip's own check (at the model's base format) cannot see. base: the model's base
        format (None: kinema-tiny's)."""
        problems = []
        if (problem := seconds_problem(self.seconds)) is not None:
            problems.append(problem)
        if not 0 < self.fps <= MAX_FPS:
            problems.append(f"fps must be more than 0 and at most {MAX_FPS:g}, got {self.fps:g}")
        for name, v in (("width", self.width), ("height", self.height)):
            if not 16 <= v <= MAX_SIDE:
                problems.append(f"{name} must be 16..{MAX_SIDE}, got {v}")
        if self.generation_id is not None:
            try:
                wm.payload_from_id(self.generation_id)
            except wm.WatermarkError as e:
                problems.append(str(e))
        if not problems:
            too_long = frames_over_budget(
                output_frames(self, base), self.width, self.height, self.fps
            )
            if too_long:
                problems.append(f"the output's {too_long}")
        if problems:
            raise GenerationError("; ".join(problems))


@dataclass
class Stages:
    """The pluggable parts. Classifier lists left as None come from the policy."""

    policy: SafetyPolicy = DEFAULT_POLICY
    expander: Expander = field(default_factory=ShapesExpander)
    interpolator: Interpolator = field(default_factory=make_interpolator)
    upscaler: Upscaler = field(default_factory=make_upscaler)
    prompt_classifiers: list[PromptClassifier] | None = None
    frame_classifiers: list[FrameClassifier] | None = None
    clip_classifiers: list[ClipClassifier] | None = None

    def resolved(
        self,
    ) -> tuple[list[PromptClassifier], list[FrameClassifier], list[ClipClassifier]]:
        frame, clip = classifiers_for(self.policy)
        return (
            prompt_classifiers(self.policy)
            if self.prompt_classifiers is None
            else self.prompt_classifiers,
            frame if self.frame_classifiers is None else self.frame_classifiers,
            clip if self.clip_classifiers is None else self.clip_classifiers,
        )


def build_stages(
    policy: str | Path | None = None,
    expand_url: str | None = None,
    expand_model: str = "default",
    interpolator: str = "learned",
    upscaler: str = "learned",
) -> Stages:
    """Stages from names and paths, as the command line gives them; every problem is a
    GenerationError (one line) before any work."""
    try:
        interpolate, upscale = make_interpolator(interpolator), make_upscaler(upscaler)
    except (ValueError, CheckpointError) as e:
        raise GenerationError(str(e)) from None
    stages = Stages(
        policy=DEFAULT_POLICY if policy is None else load_policy(policy),
        expander=ShapesExpander() if expand_url is None else ChatExpander(expand_url, expand_model),
        interpolator=interpolate,
        upscaler=upscale,
    )
    stages.resolved()  # unknown classifier names surface here
    return stages


def base_format(s: ProductionSettings, base: BaseFormat | None = None) -> tuple[float, int, int]:
    """(fps, width, height) the model generates at: its base fps unless the target is slower;
    the target size if the model takes it natively, else the target's aspect ratio at about
    `base.base_pixels` pixels, in multiples of 16. base: the model's (None: kinema-tiny's)."""
    base = base or BaseFormat()
    fps = min(s.fps, base.fps)
    if s.width * s.height <= base.native_pixels:
        return fps, s.width, s.height
    scale = math.sqrt(base.base_pixels / (s.width * s.height))
    return (
        fps,
        max(16, round(s.width * scale / 16) * 16),
        max(16, round(s.height * scale / 16) * 16),
    )


def output_frames(s: ProductionSettings, base: BaseFormat | None = None) -> int:
    """How many frames `produce` makes for these settings from a model with this base format."""
    base_fps = base_format(s, base)[0]
    made = 1 + 4 * round(s.seconds * base_fps / 4)  # as the model makes them (1 + 4k)
    if made == 1 or base_fps == s.fps:
        return made
    return len(retime_positions(made, base_fps, s.fps))


@dataclass(frozen=True)
class PreparedPrompt:
    prompt: str  # as the user gave it
    expanded: str  # what the model is given
    negative: str
    seconds: float  # spent on safety and expansion


def prepare_prompt(prompt: str, settings: ProductionSettings, stages: Stages) -> PreparedPrompt:
    """The prompt stage alone: safety policy on the prompt, expansion (then the policy again on
    the expanded prompt), the negative prompt. Raises PromptRefused or ExpansionError."""
    start = time.perf_counter()
    prompt = check_prompt(prompt)
    checks = stages.resolved()[0]
    check_prompt_safety(prompt, checks)
    expanded = prompt
    if settings.expand:
        expanded = check_prompt(stages.expander(prompt, settings.seed))
        if expanded != prompt:
            check_prompt_safety(expanded, checks)
    negative = (
        DEFAULT_NEGATIVE_PROMPT if settings.negative_prompt is None else settings.negative_prompt
    )
    return PreparedPrompt(prompt, expanded, negative, time.perf_counter() - start)


def derived_id(base_metadata: dict, settings) -> str:
    """An identifier of the generation from what defines it (model, prompt, seed, every setting),
    so the same inputs give the same video, watermark included, bit for bit."""
    defining = {k: v for k, v in base_metadata.items() if k != "timings"}
    defining["production"] = (
        dataclasses.asdict(settings) if dataclasses.is_dataclass(settings) else str(settings)
    )
    blob = json.dumps(defining, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:32]


def mark_output(
    frames: np.ndarray,
    fps: float,
    generation_id: str,
    frame_checks: list[FrameClassifier],
    clip_checks: list[ClipClassifier],
    watermark: bool = True,
    lap: Callable[[str], None] = lambda stage: None,
) -> tuple[np.ndarray, dict]:
    """The finished frames' last stages, shared by `produce` and the serving worker: safety on
    every frame and the clip (SafetyError when flagged), then the invisible watermark carrying
    the generation id. Returns (frames, metadata: generation_id, safety, watermark, notes)."""
    safety = check_output(frames, fps, frame_checks, clip_checks)
    lap("safety")
    notes, mark = [], None
    if watermark:
        payload = wm.payload_from_id(generation_id)
        frames = wm.embed(frames, payload)
        votes = wm.votes_per_bit(len(frames), *frames.shape[1:3])
        mark = {"method": "dwtDctSvd", "payload_hex": f"{payload:08x}", "bits": wm.PAYLOAD_BITS,
                "votes_per_bit": round(votes, 2)}  # fmt: skip
        if votes < wm.MIN_VOTES:
            notes.append(f"the watermark gets {votes:.1f} votes per bit (reliable from {wm.MIN_VOTES}): "
                         "a longer or larger clip reads back more surely")  # fmt: skip
    lap("watermark")
    meta = {"generation_id": generation_id, "safety": safety.to_dict(), "watermark": mark}
    return frames, {**meta, "notes": notes}


def produce(
    pipe: Pipeline,
    prompt: str,
    settings: ProductionSettings = ProductionSettings(),
    stages: Stages | None = None,
    callback: Callable | None = None,
    prepared: PreparedPrompt | None = None,
    **generate,
) -> Video:
    """A finished clip (see the module doc). `generate` goes to `pipe(...)` as it is: sampler
    settings (steps, guidance, solver, shift), images, keyframes, motion, chain, ...
    `prepared`: the prompt stage already run (`prepare_prompt`, e.g. before loading the model).

    Raises PromptRefused before anything is generated, SafetyError when an output frame is
    flagged, GenerationError for settings that cannot be made."""
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[stage] = round(now - clock, 4)
        clock = now

    settings.check(getattr(pipe, "base", None))
    stages = stages or Stages()
    _, frame_checks, clip_checks = stages.resolved()
    prepared = prepared or prepare_prompt(prompt, settings, stages)
    prompt, expanded, negative = prepared.prompt, prepared.expanded, prepared.negative
    lap("prompt")
    timings["prompt"] = round(prepared.seconds, 4)

    base_fps, base_width, base_height = base_format(settings, getattr(pipe, "base", None))
    base = pipe(expanded, seed=settings.seed, seconds=settings.seconds, fps=base_fps, width=base_width,
                height=base_height, negative_prompt=negative, callback=callback, **generate)  # fmt: skip
    lap("generate")
    frames = base.frames
    interpolated = len(frames) > 1 and settings.fps != base_fps
    if interpolated:
        frames = retime(frames, base_fps, settings.fps, stages.interpolator)
    lap("interpolate")
    upscaled = (base_width, base_height) != (settings.width, settings.height)
    if upscaled:
        frames = stages.upscaler(frames, settings.width, settings.height)
    lap("upscale")
    generation_id = settings.generation_id or derived_id(base.metadata, settings)
    frames, marks = mark_output(frames, settings.fps, generation_id, frame_checks, clip_checks,
                                settings.watermark, lap)  # fmt: skip
    notes = list(base.metadata.get("notes", [])) + marks.pop("notes")
    quality = quality_report(frames, settings.fps, expanded, base.frames, base_fps)
    lap("quality")

    meta = dict(base.metadata)
    meta.update(
        prompt=prompt,
        expanded_prompt=expanded if settings.expand else None,
        expander=stages.expander.name if settings.expand else None,
        negative_prompt=negative,
        fps=settings.fps, width=settings.width, height=settings.height, num_frames=len(frames),
        base_fps=base_fps, base_width=base_width, base_height=base_height,
        base_frames=len(base.frames),
        production={
            "interpolator": stages.interpolator.name if interpolated else None,
            "upscaler": stages.upscaler.name if upscaled else None,
            "policy": stages.policy.name,
        },
        **marks,
        quality=quality,
        notes=notes,
        timings={**base.metadata.get("timings", {}), **timings},  # base stages, then ours
    )  # fmt: skip
    return Video(frames, settings.fps, meta)
