"""Still images: PNG in and out, contact sheets and spritesheets of clips."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps

__all__ = ["ImageError", "contact_sheet", "load_image", "save_png", "spritesheet"]

GAP = 4  # pixels between tiles and around the border of a contact sheet
BACKGROUND = (24, 24, 24)
TEXT_COLOR = (230, 230, 230)


class ImageError(ValueError):
    """A file could not be read as an image (missing, not an image, or corrupt)."""


def save_png(path: str | os.PathLike[str], image: np.ndarray) -> Path:
    """Write a uint8 image, (H, W, 3) RGB, (H, W, 4) RGBA or (H, W) grey, as PNG."""
    if image.dtype != np.uint8 or not (
        image.ndim == 2 or (image.ndim == 3 and image.shape[-1] in (3, 4))
    ):
        raise ValueError(
            f"image must be uint8 (H, W), (H, W, 3) or (H, W, 4), "
            f"got {image.dtype} {tuple(image.shape)}"
        )
    path = Path(path)
    Image.fromarray(np.ascontiguousarray(image)).save(path, format="PNG")
    return path


def load_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read any Pillow-readable image as (H, W, 3) uint8 RGB (alpha is dropped), upright: an
    EXIF orientation (phone photos) is applied, as viewers do.

    Raises:
        ImageError: The file is missing, not an image, or truncated.
    """
    path = Path(path)
    try:
        with Image.open(path) as image:
            return np.asarray(ImageOps.exif_transpose(image).convert("RGB")).copy()
    except OSError as err:
        reason = getattr(err, "strerror", None) or str(err)
        raise ImageError(f"cannot read image {path}: {reason}") from None


def contact_sheet(
    clips: Sequence[np.ndarray],
    labels: Sequence[str | None] | None = None,
    frames_per_clip: int = 8,
    max_width: int | None = None,
) -> np.ndarray:
    """Lay clips out one per row, each as frames sampled evenly in time.

    Row i shows ``min(T_i, frames_per_clip)`` frames of clip i, first and last
    included, at native size, ``GAP`` pixels apart and from the border, on a dark
    background. With ``labels``, a text strip above each row (same height for every
    row, Pillow's default font). With ``max_width``, rows that would be wider are
    resized down to fit.

    Args:
        clips: (T_i, H_i, W_i, 3) uint8 RGB arrays; sizes and lengths may differ.
        labels: One per clip (None for no text), or None for no label strips.
        frames_per_clip: Most frames shown per clip, >= 1.
        max_width: Widest the sheet may be, in pixels.

    Returns:
        (H, W, 3) uint8 RGB with W = 2 * GAP + the widest row and
        H = GAP + sum over rows of (label height + row height + GAP).
    """
    if not clips:
        raise ValueError("contact_sheet needs at least one clip")
    if labels is not None and len(labels) != len(clips):
        raise ValueError(f"got {len(labels)} labels for {len(clips)} clips")
    if frames_per_clip < 1:
        raise ValueError(f"frames_per_clip must be >= 1, got {frames_per_clip}")
    for clip in clips:
        _check_clip(clip)

    font = ImageFont.load_default()
    label_height = font.getbbox("Ag")[3] + 2 if labels is not None else 0
    row_width = None if max_width is None else max_width - 2 * GAP
    rows = [_row(clip, frames_per_clip, row_width) for clip in clips]

    width = 2 * GAP + max(row.shape[1] for row in rows)
    height = GAP + sum(label_height + row.shape[0] + GAP for row in rows)
    sheet = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    top = GAP
    for index, row in enumerate(rows):
        if labels is not None and labels[index]:
            draw.text((GAP, top), str(labels[index]), fill=TEXT_COLOR, font=font)
        top += label_height
        sheet.paste(Image.fromarray(row), (GAP, top))
        top += row.shape[0] + GAP
    return np.asarray(sheet).copy()


def spritesheet(frames: np.ndarray, columns: int | None = None) -> np.ndarray:
    """Tile every frame of one clip into a grid, row-major, without gaps.

    Args:
        frames: (T, H, W, 3) uint8 RGB.
        columns: Frames per grid row; default ``ceil(sqrt(T))``.

    Returns:
        (rows * H, columns * W, 3) uint8 with rows = ceil(T / columns); cells past
        the last frame are black.
    """
    _check_clip(frames)
    count, height, width, _ = frames.shape
    columns = columns or math.ceil(math.sqrt(count))
    if columns < 1:
        raise ValueError(f"columns must be >= 1, got {columns}")
    columns = min(columns, count)
    rows = math.ceil(count / columns)
    grid = np.zeros((rows * columns, height, width, 3), dtype=np.uint8)
    grid[:count] = frames
    grid = grid.reshape(rows, columns, height, width, 3).transpose(0, 2, 1, 3, 4)
    return grid.reshape(rows * height, columns * width, 3)


def _check_clip(clip: np.ndarray) -> None:
    """Raise ValueError unless clip is a non-empty (T, H, W, 3) uint8 array."""
    if not isinstance(clip, np.ndarray) or clip.dtype != np.uint8 or clip.ndim != 4:
        raise ValueError(
            f"clips must be uint8 (T, H, W, 3), got "
            f"{getattr(clip, 'dtype', type(clip))} {tuple(getattr(clip, 'shape', ()))}"
        )
    if clip.shape[-1] != 3 or min(clip.shape) == 0:
        raise ValueError(f"clips must be non-empty uint8 (T, H, W, 3), got {tuple(clip.shape)}")


def _row(clip: np.ndarray, frames_per_clip: int, max_width: int | None) -> np.ndarray:
    """(T, H, W, 3) -> (h, n * w + (n - 1) * GAP, 3): n evenly spaced frames side by side.

    Tiles keep their size (h, w) = (H, W) unless the row would exceed ``max_width``,
    in which case they are resized down by a common factor.
    """
    count, height, width, _ = clip.shape
    shown = min(count, frames_per_clip)
    indices = np.linspace(0, count - 1, shown).round().astype(int)
    if max_width is not None and shown * width + (shown - 1) * GAP > max_width:
        scale = (max_width - (shown - 1) * GAP) / (shown * width)
        if scale <= 0:
            raise ValueError(f"max_width {max_width + 2 * GAP} too small for {shown} tiles")
        width, height = max(1, int(width * scale)), max(1, round(height * scale))
    row = np.full((height, shown * width + (shown - 1) * GAP, 3), BACKGROUND, dtype=np.uint8)
    for slot, index in enumerate(indices):
        tile = clip[index]
        if tile.shape[:2] != (height, width):
            tile = np.asarray(
                Image.fromarray(tile).resize((width, height), Image.Resampling.BILINEAR)
            )
        left = slot * (width + GAP)
        row[:, left : left + width] = tile
    return row
