"""The analytic detector: frames in, the scene read back out.

Per frame: classify pixels to the nearest palette colour, cut each colour into connected blobs,
read each blob's shape (how much of its bounding box it fills), size (equal-area radius) and
centroid. Across frames: link blobs into tracks, keep lost tracks to re-link an object that comes
back out from behind the pillar, then derive each track's motion (direction, speed, growth,
bounce with a parabola fit). Works on any video, rendered or generated, of any size and fps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

from kinema.world import vocab
from kinema.world.motion import SHAPE_EXTENTS

PALETTE_NAMES = tuple(vocab.COLORS)
PALETTE = np.array([vocab.COLORS[c] for c in PALETTE_NAMES], np.float32)  # (8, 3)
OBJECT_COLOR_TOLERANCE = 90.0  # RGB distance; backgrounds and pillar are all further than this
PILLAR_TOLERANCE = 45.0
SIZE_BOUNDS = (
    math.sqrt(vocab.SIZES["small"] * vocab.SIZES["medium"]),
    math.sqrt(vocab.SIZES["medium"] * vocab.SIZES["large"]),
)
SPEED_BOUND = math.sqrt(vocab.SPEEDS["slow"] * vocab.SPEEDS["fast"])
TINY_AREA_PX = 40.0
MAX_HALF_WIDTH = SHAPE_EXTENTS["triangle"][0] * vocab.SIZES["large"]  # short sides
GROWTH_BOUND = math.sqrt(vocab.GROWTH_RATES["slow"] * vocab.GROWTH_RATES["fast"])


@dataclass(frozen=True)
class Blob:
    """One object seen in one frame. Positions in frame fractions, radius in short sides."""

    frame: int
    color: str
    shape: str
    x: float
    y: float
    radius: float
    truncated: bool  # cut by the frame edge, the pillar or another object: shape/size unsure
    area_px: float = 0.0  # covered pixels: below ~40 the shape is hard to tell
    fill: float = 0.0  # share of its bounding box covered: square 1.0, circle 0.785

    @property
    def tiny(self) -> bool:
        return self.area_px < TINY_AREA_PX


@dataclass
class Track:
    """One object followed through the clip."""

    blobs: list[Blob] = field(default_factory=list)
    color: str = ""
    shape: str = ""
    size: str = ""
    motion: str = ""
    speed: str = ""
    velocity: tuple[float, float] = (0.0, 0.0)  # frame fractions per second
    growth_rate: float = 0.0  # log radius per second
    bounce_r2: float | None = None  # fit of the falling arcs to parabolas, when bouncing
    gaps: list[tuple[int, int]] = field(default_factory=list)  # frames unseen between sightings

    @property
    def frames(self) -> list[int]:
        return [b.frame for b in self.blobs]


@dataclass(frozen=True)
class Detection:
    background: str
    occluder: bool
    tracks: tuple[Track, ...]
    blobs: tuple[tuple[Blob, ...], ...]  # per frame
    fps: float
    num_frames: int

    @property
    def count(self) -> int:
        return len(self.tracks)


# ----------------------------------------------------------------------------- per frame


def classify_pixels(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) palette index per pixel (-1: not an object colour) and (H, W) pillar mask."""
    pix = frame.reshape(-1, 3).astype(np.float32)
    # squared distances to the palette as |p|^2 - 2 p.c + |c|^2: one small matmul
    sq = (pix * pix).sum(1, keepdims=True)
    dist2 = sq - 2 * pix @ PALETTE.T + (PALETTE * PALETTE).sum(1)  # (H*W, 8)
    index = dist2.argmin(1)
    index[dist2[np.arange(len(index)), index] > OBJECT_COLOR_TOLERANCE**2] = -1
    brown = np.array(vocab.OCCLUDER_COLOR, np.float32)
    pillar = ((pix - brown) ** 2).sum(1) < PILLAR_TOLERANCE**2
    shape = frame.shape[:2]
    return index.reshape(shape), pillar.reshape(shape)


def _pillar_columns(pillar: np.ndarray) -> np.ndarray:
    """(W,) bool: columns that are mostly pillar (a full-height bar)."""
    return pillar.mean(0) > 0.6


SQUARE_FILL = 0.9  # a blob that fills more of its box than this reads as a square


def box_fill(alpha: np.ndarray) -> float:
    """Share of its bounding box a blob covers.

    alpha (h, w) is the blob's coverage in [0, 1] (anti-aliased edges included), so the box's
    sides and the area are measured with sub-pixel accuracy: a square fills 1.0 of its box, a
    circle pi/4 = 0.785, an upward triangle 0.5.
    """
    width = alpha.max(0).sum()
    height = alpha.max(1).sum()
    return float(alpha.sum() / max(width * height, 1e-6))


def _shape_from_coverage(alpha: np.ndarray, fill: float) -> str:
    """Circle, square or triangle from how a blob fills its bounding box (fill: box_fill of
    alpha), and for a triangle, which holds its mass low in the box, where its mass sits."""
    rows = alpha.sum(1)
    centre = (rows * (np.arange(len(rows)) + 0.5)).sum() / max(rows.sum(), 1e-6) / len(rows)
    if fill > SQUARE_FILL:
        return "square"
    if fill < 0.64 or (fill < 0.72 and centre > 0.56):
        return "triangle"
    return "circle"


def _coverage(frame: np.ndarray, mask: np.ndarray, free: np.ndarray) -> tuple[np.ndarray, tuple]:
    """Per-pixel coverage of a blob over its local background, on a box around the blob.

    The blob's colour is the median of its core, the background the median of a ring just
    outside it (free pixels only); each pixel's coverage is its projection between the two.
    """
    ys, xs = np.nonzero(mask)
    y0, y1 = max(ys.min() - 3, 0), min(ys.max() + 4, mask.shape[0])
    x0, x1 = max(xs.min() - 3, 0), min(xs.max() + 4, mask.shape[1])
    box = (slice(y0, y1), slice(x0, x1))
    m, f = mask[box], free[box]
    pix = frame[box].astype(np.float32)
    near = ndimage.binary_dilation(m, iterations=1)
    ring = ndimage.binary_dilation(m, iterations=3) & ~near & f
    color = np.median(pix[m], axis=0)
    bg = np.median(pix[ring], axis=0) if ring.sum() >= 4 else np.zeros(3, np.float32)
    span = color - bg
    alpha = ((pix - bg) @ span) / max(float(span @ span), 1e-6)
    alpha = np.where(m, 1.0, np.where(near, np.clip(alpha, 0.0, 1.0), 0.0))
    return alpha, (y0, x0)


def frame_blobs(frame: np.ndarray, frame_index: int = 0) -> tuple[list[Blob], bool, np.ndarray]:
    """Blobs of one frame (H, W, 3) uint8, whether a pillar is seen, and the mask of pixels
    that are not background (objects, pillar, and the pillar's columns)."""
    height, width = frame.shape[:2]
    short = min(height, width)
    index, pillar = classify_pixels(frame)
    columns = _pillar_columns(pillar)
    # The pillar's anti-aliased edge mixes with what passes behind it (yellow over brown reads
    # orange): those columns say nothing about objects.
    pillar_rim = ndimage.binary_dilation(columns, iterations=1) & ~columns
    index[:, pillar_rim] = -1
    near_pillar = ndimage.binary_dilation(np.broadcast_to(columns, (height, width)), iterations=2)
    min_area = max(3, int(0.0008 * height * width))
    pieces: list[tuple[int, np.ndarray]] = []
    for c in range(len(PALETTE_NAMES)):
        labels, n = ndimage.label(index == c, structure=np.ones((3, 3)))
        for i, sl in enumerate(ndimage.find_objects(labels), start=1):
            if sl is None:
                continue
            mask = np.zeros((height, width), bool)
            mask[sl] = labels[sl] == i
            if mask.sum() >= min_area:
                pieces.append((c, mask))
    pieces = _drop_rims(pieces)
    pieces = _merge_across_pillar(pieces, near_pillar)
    objects_mask = np.zeros((height, width), bool)
    for _, m in pieces:
        objects_mask |= m
    free = (index < 0) & ~pillar
    blobs = []
    for c, mask in pieces:
        ys, xs = np.nonzero(mask)
        ring = ndimage.binary_dilation(mask, iterations=2) & ~mask
        truncated = bool(
            ys.min() <= 0 or xs.min() <= 0 or ys.max() >= height - 1 or xs.max() >= width - 1
            or (mask & near_pillar).any() or (ring & objects_mask).any()
        )  # fmt: skip
        alpha, (y0, x0) = _coverage(frame, mask, free)
        area = float(alpha.sum())
        gy, gx = np.mgrid[: alpha.shape[0], : alpha.shape[1]]
        cx = x0 + float((alpha * (gx + 0.5)).sum()) / area
        cy = y0 + float((alpha * (gy + 0.5)).sum()) / area
        radius = math.sqrt(area / math.pi) / short
        fill = box_fill(alpha)
        blobs.append(
            Blob(frame_index, PALETTE_NAMES[c], _shape_from_coverage(alpha, fill),
                 cx / width, cy / height, radius, truncated, area, fill)
        )  # fmt: skip
    not_background = (index >= 0) | pillar | np.broadcast_to(columns, pillar.shape)
    return blobs, bool(columns.any()), not_background


def _thickness(mask: np.ndarray) -> float:
    """Largest distance from inside the blob to its edge, in pixels."""
    ys, xs = np.nonzero(mask)
    crop = mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    return float(ndimage.distance_transform_edt(np.pad(crop, 1)).max())


def _drop_rims(pieces):
    """Drop thin pieces that hug a bigger piece of another colour: the anti-aliased rim of a
    shape over a background can mix to a third palette colour (yellow over gray reads orange)."""
    kept = []
    for k, (c, mask) in enumerate(pieces):
        thick = _thickness(mask)
        if thick < 1.0:
            continue
        grown = ndimage.binary_dilation(mask, iterations=1)
        hugs = any(
            c2 != c and (grown & m2).any() and m2.sum() > 1.5 * mask.sum()
            for j, (c2, m2) in enumerate(pieces)
            if j != k
        )
        if not (hugs and thick < 2.5):
            kept.append((c, mask))
    return kept


def _merge_across_pillar(pieces, near_pillar):
    """An object half behind the pillar shows as two same-coloured pieces, one on each side.

    Two pieces are one object when both touch the pillar, they share rows, and together
    (pillar included) they are no wider than the pillar plus the widest object.
    """
    height, width = near_pillar.shape
    widest = near_pillar[0].sum() + 2 * MAX_HALF_WIDTH * min(height, width)
    touching = [i for i, (_, m) in enumerate(pieces) if (m & near_pillar).any()]
    merged: set[int] = set()
    out = []
    for a in touching:
        for b in touching:
            if a >= b or a in merged or b in merged or pieces[a][0] != pieces[b][0]:
                continue
            (ya, xa), (yb, xb) = np.nonzero(pieces[a][1]), np.nonzero(pieces[b][1])
            overlap = min(ya.max(), yb.max()) - max(ya.min(), yb.min())
            wide = max(xa.max(), xb.max()) - min(xa.min(), xb.min()) + 1
            if overlap > 0.5 * min(np.ptp(ya), np.ptp(yb)) and wide <= widest:
                out.append((pieces[a][0], pieces[a][1] | pieces[b][1]))
                merged |= {a, b}
    return out + [p for i, p in enumerate(pieces) if i not in merged]


# ----------------------------------------------------------------------------- background


def classify_background(frame: np.ndarray, exclude: np.ndarray) -> str:
    """Which background, from the pixels that are neither object nor pillar (nor next to one)."""
    keep = ~ndimage.binary_dilation(exclude, iterations=2)
    pix = frame.astype(np.float32)
    height = frame.shape[0]
    rows = np.arange(height)[:, None].repeat(frame.shape[1], 1)
    top = pix[keep & (rows < height // 4)]
    bottom = pix[keep & (rows >= height - height // 4)]
    bg = pix[keep]
    if len(bg) < 16:
        return "black"
    # checkered: strong local contrast between neighbouring pixels within rows and columns
    luma = pix.mean(-1)
    dx = np.abs(np.diff(luma, axis=1))[keep[:, 1:] & keep[:, :-1]]
    cell = vocab.CHECKER_CELL * min(frame.shape[:2])
    if len(dx) and np.percentile(dx, 100 - 50 / max(cell, 1)) > 12:
        return "checkered"
    if len(top) and len(bottom):
        top_m, bottom_m = top.mean(0), bottom.mean(0)
        if np.linalg.norm(top_m - bottom_m) > 18:
            return "gradient"
    mean = bg.mean(0)
    names = list(vocab.BACKGROUND_COLORS)
    ref = np.array([vocab.BACKGROUND_COLORS[n] for n in names], np.float32)
    return names[int(np.linalg.norm(ref - mean, axis=1).argmin())]


# ----------------------------------------------------------------------------- tracking


def _link(tracks: list[Track], lost: list[Track], blobs: list[Blob], gate: float) -> list[Track]:
    """Extend tracks with this frame's blobs (Hungarian on distance, same colour only); blobs
    left over re-open a lost track of the same colour and shape, else start a new track."""
    active = [t for t in tracks if t not in lost]
    if active and blobs:
        cost = np.full((len(active), len(blobs)), 1e6)
        for i, t in enumerate(active):
            last = t.blobs[-1]
            for j, b in enumerate(blobs):
                if b.color == last.color:
                    d = math.hypot(b.x - last.x, b.y - last.y)
                    if d <= gate:
                        cost[i, j] = d + (0.05 if b.shape != last.shape else 0.0)
        rows, cols = linear_sum_assignment(cost)
        pairs = [(r, c) for r, c in zip(rows, cols, strict=True) if cost[r, c] < 1e6]
    else:
        pairs = []
    used = {c for _, c in pairs}
    seen = set()
    for r, c in pairs:
        active[r].blobs.append(blobs[c])
        seen.add(id(active[r]))
    for t in active:
        if id(t) not in seen:
            lost.append(t)
    for j, b in enumerate(blobs):
        if j in used:
            continue
        match = [
            t
            for t in lost
            if t.blobs[-1].color == b.color and _majority([x.shape for x in t.blobs]) == b.shape
        ]
        if not match and b.truncated:
            match = [t for t in lost if t.blobs[-1].color == b.color]
        if match:
            t = min(match, key=lambda t: math.hypot(b.x - t.blobs[-1].x, b.y - t.blobs[-1].y))
            t.gaps.append((t.blobs[-1].frame + 1, b.frame - 1))
            t.blobs.append(b)
            lost.remove(t)
        else:
            tracks.append(Track(blobs=[b]))
    return tracks


def _majority(values):
    values = list(values)
    return max(set(values), key=values.count) if values else ""


def _fit_line(t: np.ndarray, v: np.ndarray) -> float:
    """Least-squares slope of v over t."""
    if len(t) < 2 or np.ptp(t) == 0:
        return 0.0
    return float(np.polyfit(t, v, 1)[0])


def _bounce_fit(t: np.ndarray, y: np.ndarray) -> float | None:
    """R^2 of parabolas with gravity pointing down fitted to the arcs between floor contacts, or
    None when the track never comes down and goes back up."""
    if len(t) < 5 or np.ptp(y) < 0.08:  # a bounce travels a good part of the frame height
        return None
    vy = np.diff(y)
    contacts = [i + 1 for i in range(len(vy) - 1) if vy[i] > 0 and vy[i + 1] < 0]  # down then up
    floor = y.max()
    contacts = [i for i in contacts if y[i] > floor - 0.15]
    if not contacts:
        return None
    # Arcs lie between contacts; a contact frame may sit on either side of the true impact,
    # so it is left out of both arcs.
    edges = [-1, *contacts, len(t)]
    residual, total = 0.0, 0.0
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        seg_t, seg_y = t[a + 1 : b], y[a + 1 : b]
        if len(seg_t) < 3:
            continue
        coef = np.polyfit(seg_t, seg_y, 2)
        if coef[0] <= 0:  # image y points down: gravity means positive curvature
            return 0.0
        residual += float(((np.polyval(coef, seg_t) - seg_y) ** 2).sum())
        total += float(((seg_y - seg_y.mean()) ** 2).sum())
    if total == 0:
        return None
    return 1.0 - residual / total


def _describe(track: Track, fps: float, camera_velocity: float) -> Track:
    """Fill in a track's attributes from its blobs; motion is read relative to the world
    (screen motion plus the camera's own horizontal velocity)."""
    whole = [b for b in track.blobs if not b.truncated] or track.blobs
    track.color = _majority(b.color for b in track.blobs)
    track.shape = _majority(b.shape for b in whole)
    first = np.median([b.radius for b in whole[:3]])
    track.size = (
        "small" if first < SIZE_BOUNDS[0] else "medium" if first < SIZE_BOUNDS[1] else "large"
    )
    # positions from every sighting (a cut-off blob's centroid is only a little off),
    # growth from whole sightings only (a cut-off blob looks smaller than it is)
    t = np.array([b.frame for b in track.blobs], np.float64) / fps
    x = np.array([b.x for b in track.blobs]) + camera_velocity * t
    y = np.array([b.y for b in track.blobs])
    t_whole = np.array([b.frame for b in whole], np.float64) / fps
    track.velocity = (_fit_line(t, x), _fit_line(t, y))
    track.growth_rate = _fit_line(t_whole, np.log([b.radius for b in whole]))
    track.bounce_r2 = _bounce_fit(t, y)
    speed = math.hypot(*track.velocity)
    path = float(np.hypot(np.diff(x), np.diff(y)).sum()) if len(x) > 1 else 0.0
    duration = float(np.ptp(t)) if len(t) > 1 else 0.0
    if abs(track.growth_rate) > 0.1 and speed < 0.05:
        track.motion = "growing" if track.growth_rate > 0 else "shrinking"
        track.speed = "fast" if abs(track.growth_rate) > GROWTH_BOUND else "slow"
    elif track.bounce_r2 is not None and track.bounce_r2 > 0.9:
        track.motion = "bouncing"
        drift = abs(track.velocity[0]) / vocab.BOUNCE_DRIFT
        track.speed = "fast" if drift > SPEED_BOUND else "slow"
    elif duration == 0 or path / max(duration, 1e-6) < 0.04:
        track.motion, track.speed = "still", "slow"
    else:
        unit = np.array(track.velocity) / max(speed, 1e-9)
        names = list(vocab.DIRECTIONS)
        dirs = np.array([vocab.DIRECTIONS[n] for n in names])
        track.motion = names[int((dirs @ unit).argmax())]
        track.speed = "fast" if speed > SPEED_BOUND else "slow"
    return track


def detect(frames: np.ndarray, fps: float = 8.0, camera_velocity: float = 0.0) -> Detection:
    """Read the scene out of a clip (T, H, W, 3) uint8.

    camera_velocity: the camera's known horizontal speed in frame widths per second (positive
    when panning right). Over a plain background a pan cannot be seen, only known from the
    prompt; with it, motions are reported relative to the world, as captions state them.
    """
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    gate = float(np.clip(2.4 / fps, 0.06, 0.4))  # fastest world motion is about 2 frames/s
    tracks: list[Track] = []
    lost: list[Track] = []
    per_frame, pillar_votes, backgrounds = [], [], []
    for i, frame in enumerate(frames):
        blobs, has_pillar, not_background = frame_blobs(frame, i)
        per_frame.append(tuple(blobs))
        pillar_votes.append(has_pillar)
        backgrounds.append(classify_background(frame, not_background))
        tracks = _link(tracks, lost, blobs, gate)
    # A track seen in fewer than 2 frames of a long clip is noise, not an object.
    min_len = 2 if len(frames) >= 6 else 1
    kept = tuple(_describe(t, fps, camera_velocity) for t in tracks if len(t.blobs) >= min_len)
    return Detection(
        background=_majority(backgrounds),
        occluder=bool(np.mean(pillar_votes) > 0.5),
        tracks=kept,
        blobs=tuple(per_frame),
        fps=fps,
        num_frames=len(frames),
    )
