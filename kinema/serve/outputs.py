"""A finished clip -> the files a video job serves, and its quality report.

    video.mp4        H.264 with the generation metadata, signed with a C2PA manifest
                     (kinema.production.export) unless the worker runs without
    thumbnail.webp   the middle frame
    spritesheet.jpg  every frame in a grid (kinema.io.images.spritesheet)

Each file is written to a temporary name and renamed into place.
"""

from __future__ import annotations

import dataclasses
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


def quality_report(frames: np.ndarray, prompt: str, fps: float) -> dict[str, float]:
    """Reference-free metrics (flicker, warping error, motion) of every clip of two frames or
    more, and prompt adherence (ShapesBench's scores) when the prompt describes a Shapes-world
    scene; an empty report for a single frame."""
    from kinema.eval.shapesbench import score_clip
    from kinema.eval.video_metrics import video_quality
    from kinema.world.spec import WorldError

    if len(frames) < 2:
        return {}
    report = {k: float(v) for k, v in dataclasses.asdict(video_quality(frames)).items()}
    try:
        adherence = score_clip(frames, prompt, fps)
    except WorldError:  # not a scene the world's parser knows: no adherence to measure
        return report
    return {
        **{f"adherence_{k}": float(v) for k, v in adherence.items() if k not in report},
        **report,
    }
