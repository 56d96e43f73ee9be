"""The wire format: the OpenAI Videos API's shapes, plus kinema's own settings as extra fields.

Requests arrive as multipart forms (what the official SDK sends) or JSON; both are read into
the same dict and checked by validation.py. The request models here describe them in the
OpenAPI spec and type-check their fields.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

_STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)


class ImageReference(BaseModel):
    model_config = _STRICT
    file_id: str | None = None
    image_url: str | None = Field(None, description="a URL or a base64 data URL")


class VideoReference(BaseModel):
    model_config = _STRICT
    id: str = Field(description="a completed video of the same key")


class CreateVideoBody(BaseModel):
    """POST /v1/videos. `seconds` and `size` follow the OpenAI format ("4", "64x64"); the fields
    after them are kinema's own."""

    model_config = _STRICT
    prompt: str = Field(pattern=r"\S", description="what to show, e.g. 'a red circle moving left'")
    model: str | None = Field(None, description="the served model (default: the server's model)")
    seconds: str | float | None = Field(None, description="clip length; 0 gives one frame")
    size: str | None = Field(None, pattern=r"^\d+x\d+$", description="WIDTHxHEIGHT, e.g. 64x64")
    input_reference: ImageReference | None = Field(
        None, description="an image to start from (multipart: an image file)"
    )
    last_reference: ImageReference | None = Field(
        None, description="an image to end on, with input_reference (multipart: an image file)"
    )
    seed: int | None = Field(None, ge=0, description="same seed, same video (default: random)")
    steps: int | None = Field(None, ge=1, description="sampler steps")
    guidance: float | None = Field(None, ge=0, le=50, description="classifier-free guidance")
    fps: float | None = Field(None, gt=0, description="frames per second")
    negative_prompt: str | None = Field(None, description="what not to show")
    solver: str | None = Field(None, description="euler or heun")
    eta: float | None = Field(
        None, ge=0, le=1,
        description="fresh noise in each Euler step: 0 the ODE, 1 ancestral (default: the model's)",
    )  # fmt: skip
    motion: float | None = Field(
        None, description="motion strength 0..255 (models with a motion input only)"
    )
    fit: Literal["crop", "pad", "resize"] | None = Field(
        None, description="how the reference images meet the clip's size (default crop)"
    )
    image_noise: float | None = Field(
        None, ge=0, le=0.5, description="0 holds the reference images exactly; more loosens them"
    )


class RemixBody(BaseModel):
    model_config = _STRICT
    prompt: str = Field(pattern=r"\S")


class ExtendBody(BaseModel):
    """POST /v1/videos/extensions: the clip of `video` followed by `seconds` more. The fields
    after `video` are kinema's own; left out, they are the source video's."""

    model_config = _STRICT
    prompt: str = Field(pattern=r"\S", description="what happens next")
    seconds: str | float = Field(description="seconds to add")
    video: VideoReference
    seed: int | None = Field(None, ge=0)
    steps: int | None = Field(None, ge=1)
    guidance: float | None = Field(None, ge=0, le=50)
    negative_prompt: str | None = None
    solver: str | None = None
    eta: float | None = Field(None, ge=0, le=1, description="fresh noise per step (see create)")
    motion: float | None = Field(None, description="motion strength 0..255 (see create)")
    size: str | None = Field(
        None, description="an uploaded video only: WIDTHxHEIGHT to fit it to (default: its own)"
    )
    fit: Literal["crop", "pad", "resize"] | None = Field(
        None, description="an uploaded video only: how it is fitted to size (default crop)"
    )


class VideoError(BaseModel):
    code: str
    message: str


class Telemetry(BaseModel):
    queue_seconds: float
    time_to_first_result_seconds: float
    compute_seconds: float
    attempts: int
    cost_estimate_usd: float
    stages: dict[str, float]


class InputReferenceInfo(BaseModel):
    """The start (input_reference) or last (last_reference) image a video was made from."""

    size: str  # as uploaded, WIDTHxHEIGHT
    fit: str
    image_noise: float


class Video(BaseModel):
    id: str
    object: Literal["video"] = "video"
    status: Literal["queued", "in_progress", "completed", "failed"]
    progress: int = Field(ge=0, le=100)
    created_at: int
    completed_at: int | None = None
    expires_at: int | None = None
    model: str
    seconds: str
    size: str
    prompt: str | None = None
    error: VideoError | None = None
    remixed_from_video_id: str | None = None
    # kinema's own
    extended_from_video_id: str | None = None
    input_reference: InputReferenceInfo | None = None
    last_reference: InputReferenceInfo | None = None
    motion: float | None = None
    seed: int
    steps: int
    guidance: float
    fps: float
    num_frames: int
    negative_prompt: str
    solver: str
    eta: float | None = None  # None: a job from before eta was kept (the model's default)
    telemetry: Telemetry | None = None
    quality: dict[str, float] | None = None


class VideoList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Video]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool


class DeletedVideo(BaseModel):
    id: str
    object: Literal["video.deleted"] = "video.deleted"
    deleted: bool = True


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail
