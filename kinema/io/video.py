"""Video files: write and read clips as (T, H, W, 3) uint8 RGB arrays.

Formats follow the file extension:

- ``.mp4``: H.264 (libx264), yuv420p, constant quality (``crf``).
- ``.webm``: VP9 (libvpx-vp9), yuv420p, constant quality (``crf``, 0-63 scale).
- ``.gif``: animated GIF written with Pillow (256-colour palette per frame).

Metadata is a flat ``dict[str, str]`` stored in the container. In MP4 custom keys
survive only with ``movflags=use_metadata_tags``, which :func:`write_video` sets.
Matroska/WebM stores tag names upper-case, so :func:`read_video` returns keys
lower-case. GIF holds only a ``"comment"``.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import av
import numpy as np
from PIL import Image

__all__ = ["VideoError", "h264_round_trip", "read_video", "write_video"]

# Keys the muxers write themselves; they are dropped on read and refused on write.
_MUXER_KEYS = frozenset({"major_brand", "minor_version", "compatible_brands", "encoder"})
_CODECS = {".mp4": ("mp4", "libx264"), ".webm": ("webm", "libvpx-vp9")}
_SUFFIXES = (*_CODECS, ".gif")
_MAX_CRF = {"libx264": 51, "libvpx-vp9": 63}


class VideoError(ValueError):
    """A file could not be read as a video (missing, not a video, or corrupt)."""


def write_video(
    path: str | os.PathLike[str],
    frames: np.ndarray,
    fps: float,
    metadata: dict[str, str] | None = None,
    crf: int = 23,
) -> Path:
    """Write a clip to ``path``; the extension picks the format.

    Args:
        path: Destination ending in ``.mp4``, ``.webm`` or ``.gif``.
        frames: (T, H, W, 3) uint8 RGB, T >= 1. For MP4/WebM an odd H or W is
            padded to even by replicating the last row/column, so the file holds
            (T, H + H % 2, W + W % 2, 3) frames.
        fps: Frames per second, > 0; may be fractional (7.5, 30000/1001).
        metadata: Container tags, str -> str. Muxer-owned keys
            (``encoder``, ``major_brand``, ...) are refused; GIF allows only ``comment``.
        crf: Constant-rate factor (lower is better quality; MP4 0-51, WebM 0-63).
            Ignored for GIF.

    Returns:
        The destination path. The file is written to a temporary file in the same
        directory and moved into place with ``os.replace``, so an error leaves no
        partial file behind.

    Raises:
        ValueError: Bad frames, fps, crf, metadata or extension.
        FileNotFoundError: The destination directory does not exist.
        RuntimeError: The PyAV build lacks the needed encoder.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _SUFFIXES:
        raise ValueError(f"unsupported video extension {path.suffix!r}; use one of {_SUFFIXES}")
    _check_frames(frames)
    rate = _as_rate(fps)
    metadata = _check_metadata(metadata or {}, gif=suffix == ".gif")
    if suffix in _CODECS and _CODECS[suffix][1] not in av.codecs_available:
        raise RuntimeError(
            f"this PyAV build has no {_CODECS[suffix][1]} encoder, cannot write {path}"
        )

    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot write {path}: directory {path.parent} does not exist")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as tmp:
            if suffix == ".gif":
                _encode_gif(tmp, frames, rate, metadata)
            else:
                container_format, codec = _CODECS[suffix]
                _encode(tmp, frames, rate, metadata, crf, container_format, codec)
        os.chmod(tmp_name, 0o666 & ~_umask())  # mkstemp makes it 0600
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def read_video(path: str | os.PathLike[str]) -> tuple[np.ndarray, float, dict[str, str]]:
    """Decode the first video stream of a file.

    Returns:
        ``(frames, fps, metadata)``: frames (T, H, W, 3) uint8 RGB, fps as a float
        (GIF stores delays in 1/100 s, so its fps is approximate), and the container
        tags with lower-case keys, muxer-owned keys removed.

    Raises:
        VideoError: The file is missing, has no video stream, or cannot be decoded.
    """
    path = Path(path)
    try:
        frames, fps, metadata = _decode(str(path))
    except (av.FFmpegError, OSError) as err:
        reason = getattr(err, "strerror", None) or str(err)
        raise VideoError(f"cannot read video {path}: {reason}") from None
    except VideoError as err:
        raise VideoError(f"cannot read video {path}: {err}") from None
    return frames, fps, metadata


@dataclass(frozen=True)
class VideoInfo:
    num_frames: int
    fps: float
    width: int
    height: int


def probe_video(
    source: str | os.PathLike[str] | BinaryIO, max_frames: int, max_pixels: int
) -> VideoInfo:
    """Frame count, fps and size of the first video stream, decoding no more than it must: a
    frame larger than max_pixels is refused before decoding, and decoding stops at the first
    frame past max_frames (uploads are bounded before anything keeps their frames).

    Raises:
        VideoError: not a readable video, or beyond the limits (the message says which).
    """
    try:
        with av.open(source if not isinstance(source, os.PathLike) else str(source)) as container:
            if not container.streams.video:
                raise VideoError(f"no video stream (detected format {container.format.name!r})")
            stream = container.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
            if width * height > max_pixels:
                raise VideoError(
                    f"its frames are {width}x{height}, more than the {max_pixels} pixels allowed"
                )
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            count = 0
            for _ in container.decode(stream):
                count += 1
                if count > max_frames:
                    raise VideoError(f"it has more than {max_frames} frames, the limit")
    except (av.FFmpegError, OSError) as err:
        raise VideoError(f"cannot decode it: {getattr(err, 'strerror', None) or err}") from None
    if count == 0:
        raise VideoError("its video stream has no decodable frames")
    return VideoInfo(count, float(rate) if rate else 0.0, width, height)


def h264_round_trip(frames: np.ndarray, fps: float = 8, crf: int = 23) -> np.ndarray:
    """Encode frames to an in-memory H.264 MP4 and decode them back.

    Shows what lossy compression does to a clip (e.g. for robustness tests).

    Args:
        frames: (T, H, W, 3) uint8 RGB; odd sizes are padded for encoding and
            cropped back.
        fps: Frame rate written to the stream.
        crf: H.264 constant-rate factor, 0 (lossless luma) to 51.

    Returns:
        (T, H, W, 3) uint8 RGB, same shape as ``frames``.
    """
    _check_frames(frames)
    buffer = io.BytesIO()
    _encode(buffer, frames, _as_rate(fps), {}, crf, "mp4", "libx264")
    buffer.seek(0)
    decoded, _, _ = _decode(buffer)
    _, height, width, _ = frames.shape
    return np.ascontiguousarray(decoded[:, :height, :width])


def _umask() -> int:
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _check_frames(frames: np.ndarray) -> None:
    """Raise ValueError unless frames is a non-empty (T, H, W, 3) uint8 array."""
    if not isinstance(frames, np.ndarray):
        raise ValueError(f"frames must be a numpy uint8 (T, H, W, 3) array, got {type(frames)}")
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(
            f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {tuple(frames.shape)}"
        )
    if min(frames.shape) == 0:
        raise ValueError(f"frames must be non-empty, got shape {tuple(frames.shape)}")


def _as_rate(fps: float) -> Fraction:
    """fps as an exact-enough Fraction (7.5 -> 15/2, 29.97002997 -> 30000/1001)."""
    if not np.isfinite(fps) or fps <= 0:
        raise ValueError(f"fps must be a positive finite number, got {fps}")
    return Fraction(fps).limit_denominator(1001)


def _check_metadata(metadata: dict[str, str], gif: bool) -> dict[str, str]:
    """Validate tags: str keys and values, no muxer-owned keys, GIF only 'comment'."""
    for key, value in metadata.items():
        if not isinstance(key, str) or not key or not isinstance(value, str):
            raise ValueError(f"metadata must map non-empty str to str, got {key!r}: {value!r}")
        if key.lower() in _MUXER_KEYS:
            raise ValueError(f"metadata key {key!r} is written by the muxer and cannot be set")
    if gif and set(metadata) - {"comment"}:
        raise ValueError(f"GIF metadata holds only 'comment', got keys {sorted(metadata)}")
    return dict(metadata)


def _pad_even(frames: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) -> (T, H + H % 2, W + W % 2, 3), replicating the last row/column."""
    _, height, width, _ = frames.shape
    if height % 2 == 0 and width % 2 == 0:
        return frames
    return np.pad(frames, ((0, 0), (0, height % 2), (0, width % 2), (0, 0)), mode="edge")


def _encode(
    target: BinaryIO,
    frames: np.ndarray,
    rate: Fraction,
    metadata: dict[str, str],
    crf: int,
    container_format: str,
    codec: str,
) -> None:
    """Encode (T, H, W, 3) uint8 RGB frames as yuv420p ``codec`` in ``container_format``."""
    if not 0 <= crf <= _MAX_CRF[codec]:
        raise ValueError(f"crf for {codec} must be in [0, {_MAX_CRF[codec]}], got {crf}")
    frames = _pad_even(frames)
    _, height, width, _ = frames.shape
    options = {"movflags": "use_metadata_tags"} if container_format == "mp4" else {}
    codec_options = {"crf": str(crf)}
    if codec == "libvpx-vp9":
        codec_options |= {"b": "0", "deadline": "good", "cpu-used": "4"}
    with av.open(target, "w", format=container_format, options=options) as container:
        container.metadata.update(metadata)
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = codec_options
        for index, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def _encode_gif(
    target: BinaryIO, frames: np.ndarray, rate: Fraction, metadata: dict[str, str]
) -> None:
    """Write an endlessly looping GIF; delays are rounded to 10 ms by the format.

    Pillow merges identical consecutive frames into one longer frame.
    """
    images = [Image.fromarray(image) for image in frames]
    images[0].save(
        target,
        format="GIF",
        save_all=True,
        append_images=images[1:],
        duration=round(1000 / rate),
        loop=0,
        **({"comment": metadata["comment"]} if "comment" in metadata else {}),
    )


def _decode(source: str | BinaryIO) -> tuple[np.ndarray, float, dict[str, str]]:
    """Decode the first video stream to ((T, H, W, 3) uint8 RGB, fps, metadata)."""
    with av.open(source, "r") as container:
        if not container.streams.video:
            kind = container.format.name
            raise VideoError(f"no video stream (detected format {kind!r})")
        stream = container.streams.video[0]
        frames = list(_rgb_frames(container, stream))
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        metadata = {
            key.lower(): value
            for key, value in container.metadata.items()
            if key.lower() not in _MUXER_KEYS
        }
    if not frames:
        raise VideoError("video stream has no decodable frames")
    if len({image.shape for image in frames}) > 1:
        raise VideoError("frame size changes within the stream")
    return np.stack(frames), float(rate) if rate else 0.0, metadata


def _rgb_frames(
    container: av.container.InputContainer, stream: av.VideoStream
) -> Iterator[np.ndarray]:
    """Yield each decoded frame of ``stream`` as (H, W, 3) uint8 RGB."""
    for frame in container.decode(stream):
        yield frame.to_ndarray(format="rgb24")
