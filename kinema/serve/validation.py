"""A request's fields -> a checked job spec, or a 400 that names the parameter to fix.

The model's own rules (sizes the VAE and patching can take, frame counts, guidance range) come
from `check_settings`, read from the served model's weight headers without loading any weights;
the server's limits (config.Limits) come on top.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from types import SimpleNamespace

from pydantic import BaseModel, ValidationError
from safetensors import safe_open

from kinema.dit.transformer import DiTConfig
from kinema.models import resolve_model
from kinema.pipeline.text_to_video import (
    GenerationError,
    GenerationSettings,
    check_prompt,
    check_settings,
)
from kinema.sampling.solvers import SOLVERS
from kinema.serve.config import Defaults, Limits
from kinema.serve.errors import ApiError
from kinema.vae.causal_vae import VAEConfig

MAX_SEED = 2**63 - 1

# what the first words of a check_settings problem are about -> the request parameter
_PARAM_OF_PROBLEM = {
    "width": "size", "height": "size", "size": "size", "frame": "seconds", "steps": "steps",
    "guidance": "guidance", "fps": "fps", "unknown": "solver",
}  # fmt: skip


def unsupported(param: str, what: str, model: str) -> ApiError:
    return ApiError(
        400,
        f"{what} is not supported by this model yet ({model} generates from text only)",
        param=param,
        code="unsupported",
    )


@dataclass(frozen=True)
class ModelInfo:
    """What the served model accepts, from the configs in its weight files' headers."""

    name: str
    vae: SimpleNamespace  # .cfg: VAEConfig
    dit: SimpleNamespace  # .cfg: DiTConfig

    @classmethod
    def read(cls, model: str) -> ModelInfo:
        folder = resolve_model(model)
        configs = {}
        for part in ("vae", "dit"):
            with safe_open(str(folder / f"{part}.safetensors"), "pt") as f:
                configs[part] = json.loads((f.metadata() or {})["config"])
        vae = VAEConfig(**{**configs["vae"], "channels": tuple(configs["vae"]["channels"])})
        return cls(
            model, SimpleNamespace(cfg=vae), SimpleNamespace(cfg=DiTConfig(**configs["dit"]))
        )


@dataclass(frozen=True)
class JobSpec:
    prompt: str
    model: str
    params: dict  # width, height, num_frames, fps, steps, guidance, negative_prompt, seed,
    # solver, and seconds as asked ("4")


_PATTERN_MESSAGES = {
    "prompt": "the prompt is empty: describe the clip, e.g. 'a red circle moving left'",
    "size": "size must look like WIDTHxHEIGHT, e.g. 64x64",
}


def parse_fields(model: type[BaseModel], fields: dict) -> BaseModel:
    """Type-check request fields; the first problem becomes a 400 naming its parameter."""
    try:
        return model.model_validate(fields)
    except ValidationError as e:
        problem = e.errors()[0]
        param = ".".join(str(p) for p in problem["loc"]) or None
        kind, code = problem["type"], "invalid_value"
        if kind == "extra_forbidden":
            known = ", ".join(model.model_fields)
            message = f"unknown parameter {param!r}; known: {known}"
        elif kind == "missing":
            message = f"{param} is required"
        elif kind == "string_pattern_mismatch" and param in _PATTERN_MESSAGES:
            message = _PATTERN_MESSAGES[param]
        else:
            message = f"{param}: {problem['msg']}"
            if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
                code = "out_of_range"
        raise ApiError(400, message, param=param, code=code) from None


def check_text(text: str, param: str, limits: Limits, required: bool = True) -> str:
    if len(text) > limits.max_prompt_chars:
        raise ApiError(
            400,
            f"{param} has {len(text)} characters; the limit is {limits.max_prompt_chars}",
            param=param,
            code="too_long",
        )
    if required:
        try:
            text = check_prompt(text)
        except GenerationError as e:
            raise ApiError(400, str(e), param=param, code="invalid_value") from None
    return text


def parse_seconds(
    value: str | float | None, limits: Limits, defaults: Defaults
) -> tuple[str, float]:
    """The seconds field as asked (OpenAI sends a string) and as a number."""
    raw = defaults.seconds if value is None else value
    try:
        seconds = float(raw)
    except (TypeError, ValueError):
        raise ApiError(400, f"seconds must be a number, e.g. '2', got {raw!r}", param="seconds",
                       code="invalid_value") from None  # fmt: skip
    if not 0 <= seconds <= limits.max_seconds:
        raise ApiError(400, f"seconds must be 0 to {limits.max_seconds:g}, got {raw!r}",
                       param="seconds", code="out_of_range")  # fmt: skip
    return (raw if isinstance(raw, str) else f"{raw:g}").strip(), seconds


def parse_size(value: str | None, limits: Limits, defaults: Defaults) -> tuple[int, int]:
    raw = defaults.size if value is None else value
    try:
        width, height = (int(v) for v in raw.lower().split("x"))
    except (AttributeError, ValueError):
        raise ApiError(400, f"size must look like WIDTHxHEIGHT, e.g. 64x64, got {raw!r}",
                       param="size", code="invalid_value") from None  # fmt: skip
    if width < 1 or height < 1 or width * height > limits.max_pixels:
        raise ApiError(
            400,
            f"size {raw} is outside this server's limit of {limits.max_pixels} pixels per frame",
            param="size",
            code="out_of_range",
        )
    return width, height


def _bounded(value, lo, hi, param: str):
    if not lo <= value <= hi:
        raise ApiError(400, f"{param} must be {lo:g} to {hi:g}, got {value:g}", param=param,
                       code="out_of_range")  # fmt: skip
    return value


def job_spec(fields: dict, info: ModelInfo, limits: Limits, defaults: Defaults) -> JobSpec:
    """Check a create request's fields (files aside) and turn them into a job spec."""
    from kinema.serve.schemas import CreateVideoBody

    body = parse_fields(CreateVideoBody, fields)
    prompt = check_text(body.prompt, "prompt", limits)
    if body.model is not None and body.model != info.name:
        raise ApiError(400, f"model {body.model!r} is not served here; this server runs {info.name!r}",
                       param="model", code="model_not_found")  # fmt: skip
    if body.motion is not None:
        raise unsupported("motion", "motion strength", info.name)
    if body.input_reference is not None:
        raise unsupported("input_reference", "an input reference image", info.name)
    seconds_text, seconds = parse_seconds(body.seconds, limits, defaults)
    width, height = parse_size(body.size, limits, defaults)
    fps = _bounded(body.fps if body.fps is not None else defaults.fps, 0.5, limits.max_fps, "fps")
    steps = _bounded(
        body.steps if body.steps is not None else defaults.steps, 1, limits.max_steps, "steps"
    )
    seed = body.seed if body.seed is not None else secrets.randbelow(2**31)
    _bounded(seed, 0, MAX_SEED, "seed")
    negative = check_text(body.negative_prompt or "", "negative_prompt", limits, required=False)
    solver = body.solver or "euler"
    if solver not in SOLVERS:
        raise ApiError(400, f"unknown solver {solver!r}; known: {', '.join(SOLVERS)}",
                       param="solver", code="invalid_value")  # fmt: skip
    guidance = body.guidance if body.guidance is not None else defaults.guidance
    try:
        settings = GenerationSettings.from_seconds(
            seconds, fps, width=width, height=height, steps=steps, guidance=guidance,
            negative_prompt=negative, seed=seed, solver=solver,
        )  # fmt: skip
        check_settings(settings, info.vae, info.dit)
    except GenerationError as e:
        first = str(e).split()[0] if str(e) else ""
        raise ApiError(
            400, str(e), param=_PARAM_OF_PROBLEM.get(first), code="invalid_value"
        ) from None
    params = {
        "width": width, "height": height, "num_frames": settings.num_frames, "fps": fps,
        "steps": steps, "guidance": guidance, "negative_prompt": negative, "seed": seed,
        "solver": solver, "seconds": seconds_text,
    }  # fmt: skip
    return JobSpec(prompt, info.name, params)
