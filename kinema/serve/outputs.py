"""A finished clip -> the files a video job serves, and its quality report.

    video.mp4        H.264 with the generation metadata, signed with a C2PA manifest
                     (kinema.production.export) unless the worker runs without
    thumbnail.webp   the middle frame
    spritesheet.jpg  every frame in a grid (kinema.io.images.spritesheet)

Each file is written to a temporary name and renamed into place.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from kinema.api import Video
from kinema.io.images import spritesheet
from kinema.serve.storage import VARIANTS, write_atomic


def _encode_image(image: np.ndarray, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def write_outputs(video: Video, folder: Path, c2pa: bool = True) -> None:
    from kinema.production import ExportSettings, export

    export(video, folder / VARIANTS["video"][0], ExportSettings(formats=(), c2pa=c2pa))
    middle = video.frames[len(video.frames) // 2]
    write_atomic(folder / VARIANTS["thumbnail"][0], _encode_image(middle, "WEBP", quality=90))
    sheet = spritesheet(video.frames)
    write_atomic(folder / VARIANTS["spritesheet"][0], _encode_image(sheet, "JPEG", quality=90))


def quality_report(report: dict) -> dict[str, float]:
    """The API's flat form of a clip's production quality report
    (kinema.production.report.quality_report): the output's reference-free metrics (flicker,
    warping error, motion), and adherence_<dimension> (ShapesBench's scores) when the prompt
    describes a Shapes-world scene; empty for a single frame."""
    metrics = {k: float(v) for k, v in report.items() if k not in ("adherence", "adherence_of")}
    adherence = report.get("adherence") or {}
    return {
        **{f"adherence_{k}": float(v) for k, v in adherence.items() if k not in metrics},
        **metrics,
    }
