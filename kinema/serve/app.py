"""The HTTP API: the OpenAI Videos API on FastAPI, over the job store.

    POST   /v1/videos                  create (multipart as the official SDK sends it, or JSON);
                                       input_reference: a start image (a file, or a data URL),
                                       last_reference: a last one (with input_reference)
    GET    /v1/videos                  list the key's videos (after, limit, order)
    GET    /v1/videos/{id}             retrieve; `openai-poll-after-ms` while it runs
    DELETE /v1/videos/{id}             delete (cancels it if it is still running)
    GET    /v1/videos/{id}/content     ?variant=video|thumbnail|spritesheet
    POST   /v1/videos/{id}/remix       a new job from the original's settings and a new prompt
    POST   /v1/videos/{id}/cancel      kinema's own: stop a queued or running job
    POST   /v1/videos/extensions       a completed video followed by `seconds` more
    GET    /metrics  /healthz          operations; /ui is the web app (ui.py)

The API process never loads the model: requests are checked against the model's configs (read
from its weight headers) and queued; workers generate. Files a job is made from (a start image,
a last image, the clip to extend) are stored with the job before it is queued (storage.py).
"""

from __future__ import annotations

import copy
import json
import re
import time
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError
from starlette.convertors import Convertor, register_url_convertor
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException

import kinema
from kinema.io.images import ImageError
from kinema.io.video import VideoError
from kinema.pipeline.conditioning import ConditioningError
from kinema.pipeline.text_to_video import GenerationError
from kinema.serve import errors
from kinema.serve.auth import Auth
from kinema.serve.config import ServeConfig
from kinema.serve.errors import ApiError, not_found
from kinema.serve.jobs import (
    ACTIVE,
    COMPLETED,
    FAILED,
    Job,
    JobStore,
    QueueFull,
    UnknownCursor,
    new_job_id,
)
from kinema.serve.metrics import Metrics
from kinema.serve.schemas import (
    CreateVideoBody,
    DeletedVideo,
    ErrorBody,
    ExtendBody,
    InputReferenceInfo,
    RemixBody,
    Video,
    VideoList,
)
from kinema.serve.schemas import VideoError as VideoErrorBody
from kinema.serve.storage import JOB_ID, SOURCE_VIDEO, VARIANTS, Storage
from kinema.serve.validation import (
    JobSpec,
    ModelInfo,
    check_text,
    extension_spec,
    job_spec,
    parse_fields,
    uploaded_source,
)

_NESTED = re.compile(r"(\w+)\[(\w+)\]")  # multipart spelling of {"video": {"id": ...}}
IMAGE_FIELDS = ("input_reference", "last_reference")  # the create request's file fields


@dataclass
class Services:
    """What the routes (and the web UI) share."""

    config: ServeConfig
    store: JobStore
    storage: Storage
    auth: Auth
    model: ModelInfo
    metrics: Metrics

    @classmethod
    def build(cls, config: ServeConfig, store: JobStore | None = None) -> Services:
        config.data_dir.mkdir(parents=True, exist_ok=True)
        store = store or JobStore(
            config.db_url, config.lease_seconds, config.max_attempts,
            config.retention_hours * 3600 or None,
        )  # fmt: skip
        return cls(config, store, Storage(config.data_dir), Auth(config.api_keys),
                   ModelInfo.read(config.model), Metrics(store))  # fmt: skip

    # ------------------------------------------------------------ shared by API and UI

    def submit(
        self, owner: str, fields: dict, upload: bytes | None = None,
        last_upload: bytes | None = None,
    ) -> Job:  # fmt: skip
        """A create request's fields, and its uploaded input_reference and last_reference (if
        any), as a job."""
        spec = job_spec(fields, self.model, self.config.limits, self.config.defaults, upload,
                        last_upload)  # fmt: skip
        return self._create(owner, spec)

    def remix(self, owner: str, source: Job, prompt: str) -> Job:
        prompt = check_text(prompt, "prompt", self.config.limits)
        spec = JobSpec(prompt, self.model.name, source.params)
        return self._create(owner, spec, remixed_from=source.id, files=self._inputs(source))

    def extend(self, owner: str, body: ExtendBody, upload: bytes | None = None) -> Job:
        """A job that continues completed video body.video.id (of this owner), or the uploaded
        MP4 `upload`."""
        if upload is not None:
            source = uploaded_source(upload, body, self.model, self.config.limits,
                                     self.config.defaults)  # fmt: skip
            spec = extension_spec(body, None, source, self.model, self.config.limits,
                                  self.config.defaults)  # fmt: skip
            spec.inputs[SOURCE_VIDEO] = upload
            return self._create(owner, spec)
        source = self.owned(owner, body.video.id)
        if source.status != COMPLETED:
            state = "failed" if source.status == FAILED else "is not completed yet"
            raise ApiError(409, f"video {source.id} {state}: only a completed video can be "
                           "extended", param="video", code="video_not_ready")  # fmt: skip
        spec = extension_spec(body, source.id, source.params, self.model, self.config.limits,
                              self.config.defaults)  # fmt: skip
        return self._create(owner, spec, files={SOURCE_VIDEO: self.file(source, "video")})

    def _create(
        self, owner: str, spec: JobSpec, remixed_from: str | None = None, files: dict | None = None
    ) -> Job:
        """Store the job's input files under a fresh id, then queue it, so that a worker never
        sees a job without its files. files: {input name: path of a file to take as it is}."""
        job_id = new_job_id()
        try:
            for name, data in spec.inputs.items():
                self.storage.put_input(job_id, name, data)
            for name, path in (files or {}).items():
                self.storage.copy_input(path, job_id, name)
            limit = self.config.limits.max_active_per_key
            return self.store.create(owner, self.model.name, spec.prompt, spec.params, limit,
                                     remixed_from, job_id)  # fmt: skip
        except QueueFull as e:
            self.storage.remove(job_id)
            raise ApiError(
                429, f"{e}: wait for some to finish", param=None, code="too_many_queued_jobs",
                headers={"Retry-After": "5"},
            ) from None  # fmt: skip
        except BaseException:
            self.storage.remove(job_id)
            raise

    def _inputs(self, job: Job) -> dict:
        """{name: path} of the input files a job was made from; 404 once they have expired."""
        p = job.params
        names = [*((p.get(f) or {}).get("file") for f in IMAGE_FIELDS),
                 SOURCE_VIDEO if p.get("extend_seconds") else None]  # fmt: skip
        paths = {n: self.storage.input_path(job.id, n) for n in names if n}
        if paths and (job.purged_at is not None or not all(f.is_file() for f in paths.values())):
            raise ApiError(404, f"the files of video {job.id} have expired", param="video_id",
                           code="expired")  # fmt: skip
        return paths

    def owned(self, owner: str, video_id: str) -> Job:
        job = self.store.get(video_id, owner) if JOB_ID.fullmatch(video_id) else None
        if job is None:
            raise not_found(video_id)
        return job

    def file(self, job: Job, variant: str):
        """Path of a completed job's file; ApiError while it is not ready or after it expired."""
        if job.status != COMPLETED:
            message = "failed" if job.status == FAILED else "is not finished yet"
            raise ApiError(409, f"video {job.id} {message}: no content", param="video_id",
                           code="video_not_ready")  # fmt: skip
        path = self.storage.path(job.id, job.output, variant) if job.output else None
        if job.purged_at is not None or path is None or not path.is_file():
            raise ApiError(404, f"the files of video {job.id} have expired", param="video_id",
                           code="expired")  # fmt: skip
        return path


def video_object(job: Job) -> Video:
    p = job.params
    images = {
        f: InputReferenceInfo(**{k: p[f][k] for k in ("size", "fit", "image_noise")})
        for f in IMAGE_FIELDS
        if p.get(f)
    }
    error = VideoErrorBody(code=job.error_code or "failed", message=job.error_message or "failed")
    return Video(
        id=job.id, status=job.status, progress=100 if job.status == COMPLETED else job.progress,
        created_at=int(job.created_at),
        completed_at=int(job.completed_at) if job.completed_at is not None else None,
        expires_at=int(job.expires_at) if job.expires_at is not None else None,
        model=job.model, seconds=p["seconds"], size=f"{p['width']}x{p['height']}",
        prompt=job.prompt, error=error if job.status == FAILED else None,
        remixed_from_video_id=job.remixed_from, seed=p["seed"], steps=p["steps"],
        guidance=p["guidance"], fps=p["fps"], num_frames=p["num_frames"],
        negative_prompt=p["negative_prompt"], solver=p["solver"], eta=p.get("eta"),
        telemetry=job.telemetry,
        quality=job.quality, extended_from_video_id=p.get("extended_from"), motion=p.get("motion"),
        input_reference=images.get("input_reference"), last_reference=images.get("last_reference"),
    )  # fmt: skip


def _poll_headers(job: Job, config: ServeConfig) -> dict[str, str]:
    if job.status not in ACTIVE:
        return {}
    return {"openai-poll-after-ms": str(config.poll_after_ms)}


def _video_response(job: Job, config: ServeConfig) -> JSONResponse:
    return JSONResponse(
        video_object(job).model_dump(mode="json"), headers=_poll_headers(job, config)
    )


# ------------------------------------------------------------------ reading request bodies


async def read_body(request: Request, cap: int) -> tuple[dict, dict[str, bytes]]:
    """JSON or form fields, and uploaded files, from a body of at most `cap` bytes."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > cap:
        raise ApiError(413, f"the request body is larger than {cap} bytes", code="too_large")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            raise ApiError(413, f"the request body is larger than {cap} bytes", code="too_large")
        chunks.append(chunk)
    body = b"".join(chunks)
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind in ("multipart/form-data", "application/x-www-form-urlencoded"):
        return await _read_form(request, body)
    if kind not in ("application/json", ""):
        raise ApiError(415, f"send application/json or multipart/form-data, not {kind!r}",
                       code="unsupported_media_type")  # fmt: skip
    try:
        fields = json.loads(body) if body.strip() else {}
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "the body is not valid JSON", code="invalid_json") from None
    if not isinstance(fields, dict):
        raise ApiError(400, "the body must be a JSON object", code="invalid_json")
    return fields, {}


async def _read_form(request: Request, body: bytes) -> tuple[dict, dict[str, bytes]]:
    async def replay():
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(max_files=4, max_fields=64)
    except (MultiPartException, AssertionError, ValueError, KeyError) as e:
        raise ApiError(400, f"malformed form data: {e}", code="invalid_form") from None
    fields: dict[str, Any] = {}
    files: dict[str, bytes] = {}
    try:
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                files[key] = await value.read()
                continue
            nested = _NESTED.fullmatch(key)
            if nested:
                fields.setdefault(nested[1], {})
                if isinstance(fields[nested[1]], dict):
                    fields[nested[1]][nested[2]] = value
            else:
                fields[key] = value
    finally:
        await form.close()
    return fields, files


def check_mp4(data: bytes, param: str, limit: int) -> None:
    if len(data) > limit:
        raise ApiError(413, f"{param} is {len(data)} bytes; the limit is {limit}", param=param,
                       code="file_too_large")  # fmt: skip
    if len(data) < 12 or data[4:8] != b"ftyp":
        raise ApiError(400, f"{param} must be an MP4 video", param=param, code="invalid_file_type")


# ------------------------------------------------------------------ the OpenAPI document


def _inline(schema: dict) -> dict:
    """A pydantic JSON schema with its $defs inlined (for request bodies given by hand)."""
    defs = schema.pop("$defs", {})

    def walk(node):
        if isinstance(node, dict):
            if "$ref" in node:
                return walk(copy.deepcopy(defs[node["$ref"].rsplit("/", 1)[-1]]))
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(schema)


def _request_body(model: type[BaseModel], file_fields: tuple[str, ...]) -> dict:
    """Both encodings of a body: JSON, and the multipart form the OpenAI SDK sends."""
    as_json = _inline(model.model_json_schema())
    form = copy.deepcopy(as_json)
    for name in file_fields:
        form["properties"][name] = {"type": "string", "format": "binary"}
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": as_json},
                "multipart/form-data": {"schema": form},
            },
        }
    }


def _responses(*codes: int) -> dict:
    return {c: {"model": ErrorBody, "description": "error"} for c in (400, 401, *codes)}


def _openapi(app: FastAPI) -> dict:
    """FastAPI's document with its 422s replaced: validation errors here are 400s."""
    if app.openapi_schema is None:
        spec = get_openapi(title=app.title, version=app.version, routes=app.routes,
                           description=app.description)  # fmt: skip
        for path in spec["paths"].values():
            for operation in path.values():
                operation.get("responses", {}).pop("422", None)
        for name in ("HTTPValidationError", "ValidationError"):
            spec.get("components", {}).get("schemas", {}).pop(name, None)
        app.openapi_schema = spec
    return app.openapi_schema


# ------------------------------------------------------------------ the app

_bearer = HTTPBearer(auto_error=False, description="an API key of this server")


def _owner(
    request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> str:
    return request.app.state.services.auth.owner(creds.credentials if creds is not None else None)


Owner = Annotated[str, Depends(_owner)]


class _VideoIdConvertor(Convertor):
    """Path segments that are video ids, so that /v1/videos/extensions is no id."""

    regex = JOB_ID.pattern

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("kinema_video_id", _VideoIdConvertor())
VideoId = Annotated[str, Path(pattern=f"^{JOB_ID.pattern}$", description="a video's id")]


def create_app(services: Services, ui: bool = False) -> FastAPI:
    config = services.config
    limits = config.limits
    # room for the form fields around a file, or for base64 (4/3) in a JSON data URL
    upload_cap = limits.max_upload_bytes * 4 // 3 + 256 * 1024
    create_cap = len(IMAGE_FIELDS) * limits.max_upload_bytes * 4 // 3 + 256 * 1024  # two images
    app = FastAPI(
        title="kinema", version=kinema.__version__,
        description="Text to video, in the OpenAI Videos API format.",
    )  # fmt: skip
    app.state.services = services
    errors.install(app)

    @app.exception_handler(GenerationError)
    @app.exception_handler(ConditioningError)
    @app.exception_handler(ImageError)
    @app.exception_handler(VideoError)
    async def pipeline_refused(request: Request, exc: ValueError):
        """The pipeline's own checks (the API checks first; this is the net under them)."""
        return ApiError(400, str(exc), code="invalid_value").response()

    @app.exception_handler(SQLAlchemyError)
    async def store_unavailable(request: Request, exc: SQLAlchemyError):
        errors.log.warning("job store error on %s: %s", request.url.path, exc)
        return ApiError(503, "the job store is unavailable; retry shortly", code="store_unavailable",
                        headers={"Retry-After": "2"}).response()  # fmt: skip

    @app.middleware("http")
    async def count_requests(request: Request, call_next):
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path_format", None) or "unmatched"
        if not path.startswith("/ui"):
            services.metrics.observe(request.method, path, response.status_code, started)
        return response

    @app.get("/healthz", include_in_schema=False)
    def healthz():
        services.store.counts()
        return {"status": "ok"}

    @app.get("/metrics", include_in_schema=False)
    def metrics():
        return Response(generate_latest(services.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post(
        "/v1/videos", response_model=Video, responses=_responses(413, 415, 429),
        openapi_extra=_request_body(CreateVideoBody, IMAGE_FIELDS),
        summary="Create a video job",
    )  # fmt: skip
    async def create_video(request: Request, who: Owner):
        fields, files = await read_body(request, create_cap)
        unknown = set(files) - set(IMAGE_FIELDS)
        if unknown:
            raise ApiError(400, f"unexpected file field {sorted(unknown)[0]!r}; files are taken "
                           f"as {' and '.join(IMAGE_FIELDS)}", param=sorted(unknown)[0],
                           code="invalid_value")  # fmt: skip
        job = await run_in_threadpool(services.submit, who, fields, files.get("input_reference"),
                                      files.get("last_reference"))  # fmt: skip
        return _video_response(job, config)

    @app.get(
        "/v1/videos", response_model=VideoList, responses=_responses(404), summary="List videos"
    )
    def list_videos(
        who: Owner,
        after: Annotated[
            str | None, Query(description="id of the last video of the previous page")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
        order: Literal["asc", "desc"] = "desc",
    ):
        try:
            page, more = services.store.list(who, after or None, limit, order)
        except UnknownCursor:
            raise ApiError(404, f"after: no video {after!r} in this list", param="after",
                           code="not_found") from None  # fmt: skip
        data = [video_object(j) for j in page]
        return VideoList(data=data, has_more=more, first_id=data[0].id if data else None,
                         last_id=data[-1].id if data else None)  # fmt: skip

    @app.get("/v1/videos/{video_id:kinema_video_id}", response_model=Video, responses=_responses(404),
             summary="Retrieve a video")  # fmt: skip
    def retrieve_video(video_id: VideoId, who: Owner):
        return _video_response(services.owned(who, video_id), config)

    @app.delete("/v1/videos/{video_id:kinema_video_id}", response_model=DeletedVideo, responses=_responses(404),
                summary="Delete a video (a running one is cancelled)")  # fmt: skip
    def delete_video(video_id: VideoId, who: Owner):
        job = services.owned(who, video_id)
        if services.store.delete(job.id, who) is None:
            raise not_found(video_id)
        services.storage.remove(job.id)
        services.store.mark_purged(job.id)
        return DeletedVideo(id=job.id)

    @app.get(
        "/v1/videos/{video_id:kinema_video_id}/content", responses={**_responses(404, 409), 200: {
            "content": {t: {} for _, t in VARIANTS.values()}, "description": "the file"}},
        response_class=Response, summary="Download the video, its thumbnail or spritesheet",
    )  # fmt: skip
    def download_content(
        video_id: VideoId,
        who: Owner,
        variant: Literal["video", "thumbnail", "spritesheet"] = "video",
    ):
        job = services.owned(who, video_id)
        path = services.file(job, variant)
        name, media_type = VARIANTS[variant]
        return FileResponse(path, media_type=media_type, filename=f"{job.id}.{name.split('.')[-1]}",
                            content_disposition_type="inline")  # fmt: skip

    @app.post(
        "/v1/videos/{video_id:kinema_video_id}/remix", response_model=Video, responses=_responses(404, 413, 415, 429),
        openapi_extra=_request_body(RemixBody, ()), summary="Remix a video with a new prompt",
    )  # fmt: skip
    async def remix_video(video_id: VideoId, request: Request, who: Owner):
        fields, files = await read_body(request, 64 * 1024)
        body = parse_fields(RemixBody, {**fields, **dict.fromkeys(files, b"")})
        source = await run_in_threadpool(services.owned, who, video_id)
        job = await run_in_threadpool(services.remix, who, source, body.prompt)
        return _video_response(job, config)

    @app.post("/v1/videos/{video_id:kinema_video_id}/cancel", response_model=Video, responses=_responses(404),
              summary="Cancel a queued or running video (kinema's own)")  # fmt: skip
    def cancel_video(video_id: VideoId, who: Owner):
        job = services.owned(who, video_id)
        return _video_response(services.store.cancel(job.id, who) or job, config)

    @app.post(
        "/v1/videos/extensions", response_model=Video, responses=_responses(404, 409, 413, 415),
        openapi_extra=_request_body(ExtendBody, ("video",)),
        summary="Extend a completed video: its clip followed by `seconds` more",
    )  # fmt: skip
    async def extend_video(request: Request, who: Owner):
        fields, files = await read_body(request, upload_cap)
        if "video" in files:
            check_mp4(files["video"], "video", limits.max_upload_bytes)
            fields["video"] = {"id": "upload"}
        body = parse_fields(ExtendBody, fields)
        upload = files.get("video")
        job = await run_in_threadpool(services.extend, who, body, upload)
        return _video_response(job, config)

    app.openapi = lambda: _openapi(app)
    if ui:
        from kinema.serve.ui import mount_ui

        mount_ui(app, services)
    return app
