"""A request's fields -> a checked job spec, or a 400 that names the parameter to fix.

The model's own rules (sizes the VAE and patching can take, frame counts, guidance range) come
from `check_settings`, read from the served model's weight headers without loading any weights;
the server's limits (config.Limits) come on top. So do the model's conditioning rules, as
kinema.api.Pipeline applies them: a Wan2.1 model makes one window of at most its max_frames and
takes no known frames (no start image for T2V, no extensions), a Wan2.1 I2V model needs its
start image, and a Wan2.1 FLF2V model its start and last images. Uploaded images are checked here
too (type, size, that they decode), so that what reaches a worker is something the pipeline takes.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
import io
import json
import re
import secrets
import sys
from dataclasses import dataclass, field
from types import SimpleNamespace

from pydantic import BaseModel, ValidationError
from safetensors import safe_open

from kinema.backends.diffusers_pipeline import is_diffusers_model, pipeline_format
from kinema.convert.folders import model_layout, wan_dit_config
from kinema.dit.transformer import DiTConfig
from kinema.models import BaseFormat, base_format, resolve_model, sampler_defaults
from kinema.pipeline.conditioning import FIT_MODES
from kinema.pipeline.long_clip import check_single_window
from kinema.pipeline.text_to_video import (
    GenerationError,
    GenerationSettings,
    check_prompt,
    check_settings,
    with_defaults,
)
from kinema.pipeline.wan_i2v import wan_images
from kinema.production.policy import PromptRefused, check_prompt_safety
from kinema.production.produce import ProductionSettings, output_frames
from kinema.production.produce import base_format as production_base
from kinema.sampling.solvers import SOLVERS
from kinema.serve.config import Defaults, Limits
from kinema.serve.errors import ApiError
from kinema.serve.storage import IMAGE_INPUTS, LAST_IMAGE_INPUTS
from kinema.vae.causal_vae import VAEConfig

MAX_SEED = 2**63 - 1
MAX_IMAGE_PIXELS = 4096 * 4096  # of an input image (it is fitted to the clip's size)
MAX_IMAGE_NOISE = 0.5
_DATA_URL = re.compile(r"data:([\w.+-]+/[\w.+-]+)?((?:;[\w.+-]+=[^;,]*)*);base64,(.*)", re.I | re.S)

# what the first words of a check_settings problem are about -> the request parameter
_PARAM_OF_PROBLEM = {
    "width": "size", "height": "size", "size": "size", "frame": "seconds", "steps": "steps",
    "guidance": "guidance", "fps": "fps", "unknown": "solver", "motion": "motion",
    "image": "image_noise", "eta": "eta",
}  # fmt: skip


def unsupported(param: str, what: str, model: str, reason: str) -> ApiError:
    return ApiError(400, f"{what} is not supported by {model}: {reason}", param=param,
                    code="unsupported")  # fmt: skip


@dataclass(frozen=True)
class ModelInfo:
    """What the served model accepts, from the configs in its weight files' headers."""

    name: str
    vae: SimpleNamespace  # .cfg: VAEConfig
    dit: SimpleNamespace  # .cfg: DiTConfig
    sampler_defaults: dict = field(default_factory=dict)  # the model folder's (kinema.models)
    base: BaseFormat = field(default_factory=BaseFormat)  # where the production pipeline generates
    # images the model needs where its transformer's config cannot say (a diffusers pipeline:
    # 1 for Stable Video Diffusion, else 0); None: from the config (Wan2.1 I2V/FLF2V)
    images: int | None = None

    def default(self, key: str, server: float | None):
        """A sampler setting a request left out: the server's if set, else the model's, else
        kinema's (GenerationSettings)."""
        if server is not None:
            return server
        return self.sampler_defaults.get(key, getattr(GenerationSettings, key))

    @classmethod
    def read(cls, model: str) -> ModelInfo:
        if is_diffusers_model(model):  # sizes and frame counts from its configs
            fmt = pipeline_format(model)
            vae = SimpleNamespace(spatial_factor=fmt.unit, temporal_factor=fmt.temporal)
            dit = DiTConfig(patch=(1, 1, 1), micro_conditioning=fmt.image_to_video)
            # one pass of any length, never from known frames (kinema/backends)
            base = dataclasses.replace(BaseFormat(), known_frames=False, max_frames=sys.maxsize)
            return cls(model, SimpleNamespace(cfg=vae), SimpleNamespace(cfg=dit), base=base,
                       images=int(fmt.image_to_video))  # fmt: skip
        folder = resolve_model(model)
        layout = model_layout(folder)
        defaults = sampler_defaults(folder)
        if layout in ("diffusers", "wan"):  # Wan2.1: an 8x, 4x VAE; the transformer's config
            vae = SimpleNamespace(spatial_factor=8, temporal_factor=4)
            dit = wan_dit_config(folder)  # its patch, and the images an I2V model needs
            return cls(model, SimpleNamespace(cfg=vae), SimpleNamespace(cfg=dit), defaults,
                       base_format(folder))  # fmt: skip
        configs = {}
        for part in ("vae", "dit"):
            with safe_open(str(folder / f"{part}.safetensors"), "pt") as f:
                configs[part] = json.loads((f.metadata() or {})["config"])
        vae = VAEConfig(**{**configs["vae"], "channels": tuple(configs["vae"]["channels"])})
        dit = SimpleNamespace(cfg=DiTConfig(**configs["dit"]))
        return cls(model, SimpleNamespace(cfg=vae), dit, defaults, base_format(folder))

    @property
    def has_motion(self) -> bool:
        """The model has a motion-strength input (micro-conditioning), so `motion` is taken."""
        return bool(self.dit.cfg.micro_conditioning)

    @property
    def images_needed(self) -> int:
        """Images the model is conditioned on, and so needs: 0, 1 (Wan2.1 I2V, SVD: the first
        frame) or 2 (FLF2V: the first and the last)."""
        return self.images if self.images is not None else wan_images(self.dit.cfg)

    @property
    def takes_image_noise(self) -> bool:
        """Noise augmentation of the given images: kinema's known frames, SVD's noise_aug (a
        diffusers pipeline that needs an image); not a text-to-video pipeline's."""
        return self.takes_known_frames or bool(self.images)

    @property
    def takes_known_frames(self) -> bool:
        """As kinema.api.Pipeline.takes_known_frames: a start image at frame 0, extensions and
        chains of windows for clips longer than base.max_frames."""
        return self.base.known_frames and not self.images_needed


@dataclass(frozen=True)
class JobSpec:
    prompt: str
    model: str
    params: dict  # width, height, num_frames, fps, steps, guidance, negative_prompt, seed,
    # solver, seconds as asked ("4"), motion (None: the model's choice), input_reference and
    # last_reference (the first and last frames: {file, size, fit, image_noise} or None); an
    # extension adds extended_from (the source video's id) and extend_seconds
    inputs: dict[str, bytes] = field(default_factory=dict)  # files to store with the job, by name


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
        try:  # the production pipeline's prompt policy (kinema/production/policy.py)
            check_prompt_safety(text, _prompt_checks())
        except PromptRefused as e:
            raise ApiError(400, str(e), param=param, code="prompt_refused") from None
    return text


@functools.cache
def _prompt_checks():
    from kinema.production.policy import DEFAULT_POLICY, prompt_classifiers

    return prompt_classifiers(DEFAULT_POLICY)


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


def _too_large(param: str, size: int, limit: int) -> ApiError:
    return ApiError(413, f"{param} is {size} bytes; the limit is {limit}", param=param,
                    code="file_too_large")  # fmt: skip


def check_image(data: bytes, param: str, limit: int) -> tuple[str, int, int]:
    """(format, width, height) of an image that decodes: PNG, JPEG or WebP, at most `limit`
    bytes and MAX_IMAGE_PIXELS pixels; otherwise a 413 or 400 naming `param`."""
    from PIL import Image, UnidentifiedImageError

    if len(data) > limit:
        raise _too_large(param, len(data), limit)
    kind, width, height, decoded = None, 0, 0, False
    try:
        with Image.open(io.BytesIO(data)) as image:
            kind, (width, height) = image.format, image.size
            if kind in IMAGE_INPUTS and width * height <= MAX_IMAGE_PIXELS:
                image.load()  # truncated or corrupt pixel data fails here, not in a worker
                decoded = True
    except Image.DecompressionBombError:  # far beyond the limit: Pillow refuses to open it
        width, height = MAX_IMAGE_PIXELS, MAX_IMAGE_PIXELS
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError):
        pass
    if width * height > MAX_IMAGE_PIXELS:
        raise ApiError(400, f"{param} has more than {MAX_IMAGE_PIXELS} pixels, the limit (it is "
                       "fitted to the clip's size anyway)", param=param,
                       code="out_of_range")  # fmt: skip
    if kind not in IMAGE_INPUTS:
        raise ApiError(400, f"{param} must be a PNG, JPEG or WebP image", param=param,
                       code="invalid_file_type")  # fmt: skip
    if not decoded:
        raise ApiError(400, f"{param}: the {kind} image cannot be decoded (truncated or corrupt)",
                       param=param, code="invalid_file_type")  # fmt: skip
    return kind, width, height


def image_from_reference(ref, limit: int, field_name: str = "input_reference") -> bytes:
    """The bytes of a JSON image field `field_name` (schemas.ImageReference: input_reference or
    last_reference): a base64 data URL. Nothing can be downloaded from here, so remote URLs and
    file ids are refused."""
    if ref.file_id is not None:
        raise ApiError(400, f"{field_name}.file_id: this server has no files API; upload the "
                       "image as a file (multipart) or send image_url as a base64 data URL",
                       param=f"{field_name}.file_id", code="unsupported")  # fmt: skip
    param = f"{field_name}.image_url"
    url = (ref.image_url or "").strip()
    if not url:
        raise ApiError(400, f"{field_name} needs image_url (a base64 data URL such as "
                       "data:image/png;base64,...) or an uploaded file", param=param,
                       code="invalid_value")  # fmt: skip
    found = _DATA_URL.fullmatch(url)
    if found is None:
        remote = url.split(":", 1)[0].lower() in ("http", "https", "ftp", "s3", "gs", "file")
        message = (
            "this server cannot download images; send the image itself as a base64 data URL "
            "(data:image/png;base64,...) or upload it as a file (multipart)"
            if remote
            else "must be a base64 data URL such as data:image/png;base64,..."
        )
        raise ApiError(400, f"{param}: {message}", param=param,
                       code="unsupported" if remote else "invalid_value")  # fmt: skip
    encoded = "".join(found[3].split())
    if len(encoded) // 4 * 3 > limit:
        raise _too_large(param, len(encoded) // 4 * 3, limit)
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, f"{param}: the data URL is not valid base64", param=param,
                       code="invalid_value") from None  # fmt: skip


def _check_settings(settings: GenerationSettings, info: ModelInfo) -> None:
    if settings.eta and is_diffusers_model(info.name):  # its pipeline would refuse it in a worker
        raise unsupported("eta", "eta (fresh noise per step)", info.name, "a diffusers pipeline "
                          "samples with its own scheduler; leave eta out or send 0")  # fmt: skip
    try:
        check_settings(settings, info.vae, info.dit)
    except GenerationError as e:
        first = str(e).split()[0] if str(e) else ""
        raise ApiError(
            400, str(e), param=_PARAM_OF_PROBLEM.get(first), code="invalid_value"
        ) from None


def _one_window(settings: GenerationSettings, info: ModelInfo) -> None:
    """A model that cannot chain windows refuses a clip longer than its one window."""
    if info.takes_known_frames:
        return
    try:
        check_single_window(settings.num_frames, settings.fps, info.base.max_frames, info.name)
    except GenerationError as e:
        raise ApiError(400, str(e), param="seconds", code="out_of_range") from None


def _check_images(
    body, upload: bytes | None, last_upload: bytes | None, info: ModelInfo, num_frames: int
) -> None:
    """The start and last images a model needs (Wan2.1 I2V: the start; FLF2V: both) or cannot
    take (Wan2.1 T2V: either; I2V: a last one), before they are decoded; the worker would refuse
    the same (kinema.api.Pipeline.pinned_images). num_frames: the clip's at the base format."""
    first = upload is not None or body.input_reference is not None
    last = last_upload is not None or body.last_reference is not None
    needed = info.images_needed
    if needed == 2 and not (first and last):
        given = {"input_reference": first, "last_reference": last}
        missing = " and ".join(name for name, there in given.items() if not there)
        raise ApiError(400, f"{info.name} is a Wan2.1 first-last-frame model: it needs "
                       "input_reference (the first frame) and last_reference (the last), each "
                       f"an image file or image_url as a base64 data URL; missing: {missing}",
                       param=missing.split()[0], code="invalid_value")  # fmt: skip
    if last and not first:
        raise ApiError(400, "last_reference needs input_reference too: the clip goes from the "
                       "first image (input_reference) to the last (last_reference); send both, "
                       "or send the one image as input_reference", param="last_reference",
                       code="invalid_value")  # fmt: skip
    if needed == 1 and not first:
        raise ApiError(400, f"{info.name} is an image-to-video model: it needs "
                       "input_reference, the first frame (an image file, or image_url as a "
                       "base64 data URL)", param="input_reference",
                       code="invalid_value")  # fmt: skip
    if needed == 1 and last:
        raise unsupported("last_reference", "last_reference", info.name, "this "
                          "image-to-video model takes the first frame only; leave "
                          "last_reference out, or serve a first-last-frame (FLF2V) "
                          "model")  # fmt: skip
    if needed and body.image_noise and not info.takes_image_noise:
        raise unsupported("image_noise", "image_noise", info.name, "it takes its images "
                          "through the transformer's input, not as known frames; leave "
                          "image_noise out or at 0")  # fmt: skip
    if not needed and first and not info.takes_known_frames:
        raise unsupported("input_reference", "input_reference", info.name, "it takes no images "
                          "(it was not trained with known frames); send the prompt alone, "
                          "without input_reference or last_reference, or serve an image-to-video "
                          "model")  # fmt: skip
    if last and num_frames < 2:
        raise ApiError(400, "last_reference needs a clip of more than one frame; ask for more "
                       "seconds than 0, or leave last_reference out", param="seconds",
                       code="out_of_range")  # fmt: skip


def _check_extendable(info: ModelInfo) -> None:
    if not info.takes_known_frames:
        raise unsupported("video", "extending a video", info.name, "it continues from no known "
                          "frames (it was not trained with them); extend with a model that "
                          "takes them, such as kinema-tiny")  # fmt: skip


def _motion(value: float | None, info: ModelInfo) -> float | None:
    if value is None:
        return None
    if not info.has_motion:
        reason = "it has no motion input (micro-conditioning); leave motion out"
        raise unsupported("motion", "motion strength", info.name, reason)
    return _bounded(value, 0, 255, "motion")


def _sampler(body, base: dict, limits: Limits) -> dict:
    """steps, guidance, negative_prompt, solver, eta and seed: the body's, else those of `base`
    (an eta left out with a solver other than Euler is 0: fresh noise is an Euler setting)."""
    steps = _bounded(body.steps if body.steps is not None else base["steps"], 1,
                     limits.max_steps, "steps")  # fmt: skip
    seed = body.seed if body.seed is not None else base["seed"]
    _bounded(seed, 0, MAX_SEED, "seed")
    negative = body.negative_prompt if body.negative_prompt is not None else base["negative_prompt"]
    negative = check_text(negative, "negative_prompt", limits, required=False)
    solver = body.solver or base["solver"]
    if solver not in SOLVERS:
        raise ApiError(400, f"unknown solver {solver!r}; known: {', '.join(SOLVERS)}",
                       param="solver", code="invalid_value")  # fmt: skip
    guidance = body.guidance if body.guidance is not None else base["guidance"]
    given = {"solver": solver} if body.eta is None else {"solver": solver, "eta": body.eta}
    model = {"eta": base["eta"]} if base.get("eta") is not None else {}
    eta = with_defaults(model, given).get("eta", 0.0)  # the pipeline's rule for the model's eta
    return {"steps": steps, "guidance": guidance, "negative_prompt": negative, "seed": seed,
            "solver": solver, "eta": eta}  # fmt: skip


def _image_input(
    name: str, field, upload: bytes | None, files: dict[str, str], limits: Limits
) -> tuple[dict | None, dict]:
    """One image field (input_reference or last_reference), an upload or a data URL: ({file,
    size}, {file name: bytes}), the file named after its type by `files`; or (None, {})."""
    if upload is not None and field is not None:
        raise ApiError(400, f"{name} is given twice (a file and a field); send one", param=name,
                       code="invalid_value")  # fmt: skip
    if upload is None and field is None:
        return None, {}
    data = upload if upload is not None else image_from_reference(field, limits.max_upload_bytes,
                                                                  name)  # fmt: skip
    kind, width, height = check_image(data, name, limits.max_upload_bytes)
    return {"file": files[kind], "size": f"{width}x{height}"}, {files[kind]: data}


def _reference_images(
    body, upload: bytes | None, last_upload: bytes | None, limits: Limits
) -> tuple[dict, dict]:
    """The start and last images: their params ({input_reference, last_reference}: each {file,
    size, fit, image_noise} or None) and {file name: bytes}. One fit and one image_noise serve
    both images, as in kinema.api.Pipeline."""
    first, inputs = _image_input("input_reference", body.input_reference, upload, IMAGE_INPUTS,
                                 limits)  # fmt: skip
    last, last_inputs = _image_input("last_reference", body.last_reference, last_upload,
                                     LAST_IMAGE_INPUTS, limits)  # fmt: skip
    if first is None:  # and so no last one either (_check_images)
        for name in ("fit", "image_noise"):
            if getattr(body, name) is not None:
                raise ApiError(400, f"{name} applies to an input_reference; send one or leave "
                               f"{name} out", param=name, code="invalid_value")  # fmt: skip
        return {"input_reference": None, "last_reference": None}, {}
    fit = body.fit or "crop"
    if fit not in FIT_MODES:
        raise ApiError(400, f"unknown fit {fit!r}; known: {', '.join(FIT_MODES)}", param="fit",
                       code="invalid_value")  # fmt: skip
    noise = body.image_noise if body.image_noise is not None else 0.0
    _bounded(noise, 0, MAX_IMAGE_NOISE, "image_noise")
    shared = {"fit": fit, "image_noise": noise}
    images = {"input_reference": {**first, **shared},
              "last_reference": {**last, **shared} if last else None}  # fmt: skip
    return images, {**inputs, **last_inputs}


def job_spec(
    fields: dict,
    info: ModelInfo,
    limits: Limits,
    defaults: Defaults,
    upload: bytes | None = None,
    last_upload: bytes | None = None,
) -> JobSpec:
    """Check a create request's fields and its uploaded input_reference and last_reference (if
    any) and turn them into a job spec."""
    from kinema.serve.schemas import CreateVideoBody

    body = parse_fields(CreateVideoBody, fields)
    prompt = check_text(body.prompt, "prompt", limits)
    if body.model is not None and body.model != info.name:
        raise ApiError(400, f"model {body.model!r} is not served here; this server runs {info.name!r}",
                       param="model", code="model_not_found")  # fmt: skip
    motion = _motion(body.motion, info)
    seconds_text, seconds = parse_seconds(body.seconds, limits, defaults)
    width, height = parse_size(body.size, limits, defaults)
    fps = _bounded(body.fps if body.fps is not None else defaults.fps, 0.5, limits.max_fps, "fps")
    base = {"steps": info.default("steps", defaults.steps),
            "guidance": info.default("guidance", defaults.guidance), "negative_prompt": "",
            "seed": secrets.randbelow(2**31), "solver": "euler",
            "eta": info.default("eta", None)}  # fmt: skip
    sampler = _sampler(body, base, limits)
    # the model makes the clip at its base format; the worker's production stages take it to
    # the asked fps and size (kinema/production): check what the model will be asked for
    target = ProductionSettings(fps=fps, width=width, height=height, seconds=seconds)
    try:
        target.check(info.base)
    except GenerationError as e:
        raise ApiError(400, str(e), param="size", code="invalid_value") from None
    base_fps, base_width, base_height = production_base(target, info.base)
    settings = GenerationSettings.from_seconds(
        seconds, base_fps, width=base_width, height=base_height, motion=motion, **sampler
    )
    _check_settings(settings, info)
    _one_window(settings, info)
    _check_images(body, upload, last_upload, info, settings.num_frames)
    images, inputs = _reference_images(body, upload, last_upload, limits)  # last: it decodes them
    params = {
        "width": width, "height": height, "num_frames": output_frames(target, info.base),
        "fps": fps, **sampler, "seconds": seconds_text, "motion": motion, **images,
    }  # fmt: skip
    return JobSpec(prompt, info.name, params, inputs)


def uploaded_source(data: bytes, body, info: ModelInfo, limits: Limits, defaults: Defaults) -> dict:
    """The params of an uploaded MP4 as the source of an extension: its frame count and fps,
    the size it is fitted to (`size`, else its own) and the default sampler settings. Decoding
    is bounded: frames past what the longest extension may hold, or frames larger than an input
    image may be, are refused before they are kept."""
    from kinema.io.video import VideoError, probe_video

    _check_extendable(info)  # before decoding what it cannot extend
    most = int(limits.max_extended_seconds * limits.max_fps) + 1
    try:
        clip = probe_video(io.BytesIO(data), most, MAX_IMAGE_PIXELS)
    except VideoError as e:
        raise ApiError(400, f"video: {e}", param="video", code="invalid_value") from None
    if not 0 < clip.fps <= limits.max_fps:
        raise ApiError(400, f"video: its frame rate {clip.fps:g} is outside 0..{limits.max_fps:g}",
                       param="video", code="out_of_range")  # fmt: skip
    own = Defaults(size=f"{clip.width}x{clip.height}")
    try:
        width, height = parse_size(body.size, limits, own)
    except ApiError as e:
        if body.size is None:  # the clip's own size is beyond the limit: say how to go on
            e.message += "; give size (e.g. 64x64) to fit the video to"
        raise
    return {"width": width, "height": height, "num_frames": clip.num_frames, "fps": clip.fps,
            "steps": info.default("steps", defaults.steps),
            "guidance": info.default("guidance", defaults.guidance), "negative_prompt": "",
            "seed": secrets.randbelow(2**31), "solver": "euler", "eta": info.default("eta", None),
            "fit": body.fit or "crop"}  # fmt: skip


def extension_spec(
    body, source_id: str | None, source: dict, info: ModelInfo, limits: Limits,
    defaults: Defaults,
) -> JobSpec:  # fmt: skip
    """An extension (schemas.ExtendBody) of completed video `source_id` with params `source`:
    its size, fps and (unless the body says otherwise) sampler settings and seed. num_frames is
    the whole clip, the source's frames followed by the new ones (as `pipe.extend` makes it).
    source_id None: an uploaded video (`uploaded_source`), fitted to its size with its `fit`."""
    _check_extendable(info)
    if source_id is not None:
        for name in ("size", "fit"):
            if getattr(body, name) is not None:
                raise ApiError(400, f"{name} applies to an uploaded video; the extension of "
                               f"{source_id} keeps its size", param=name,
                               code="invalid_value")  # fmt: skip
    prompt = check_text(body.prompt, "prompt", limits)
    _, seconds = parse_seconds(body.seconds, limits, defaults)
    if seconds <= 0:
        raise ApiError(400, f"seconds to add must be more than 0, got {body.seconds!r}",
                       param="seconds", code="out_of_range")  # fmt: skip
    motion = _motion(body.motion, info)
    sampler = _sampler(body, source, limits)
    fps = source["fps"]
    total = source["num_frames"] + 4 * max(1, round(seconds * fps / 4))  # as pipe.extend adds
    if (total - 1) / fps > limits.max_extended_seconds:
        raise ApiError(400, f"the extended clip would be {(total - 1) / fps:g} s; the limit is "
                       f"{limits.max_extended_seconds:g} s", param="seconds",
                       code="out_of_range")  # fmt: skip
    settings = GenerationSettings(width=source["width"], height=source["height"], num_frames=1,
                                  fps=fps, motion=motion, **sampler)  # fmt: skip
    _check_settings(settings, info)
    params = {
        "width": source["width"], "height": source["height"], "num_frames": total, "fps": fps,
        **sampler, "seconds": f"{(total - 1) / fps:g}", "motion": motion,
        "input_reference": None, "extended_from": source_id, "extend_seconds": seconds,
        "fit": source.get("fit", "crop"),
    }  # fmt: skip
    return JobSpec(prompt, info.name, params)
