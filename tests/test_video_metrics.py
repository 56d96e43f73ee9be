"""Tests for kinema.eval.video_metrics on tiny synthetic videos."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kinema.eval.video_metrics import (
    VideoQuality,
    flicker,
    flicker_score,
    motion_magnitude,
    optical_flow,
    validate_video,
    video_quality,
    warping_error,
)

SIZE = 48
FRAMES = 9


def moving_square(speed: int, frames: int = FRAMES, size: int = SIZE, side: int = 12) -> np.ndarray:
    """``(frames, size, size, 3)`` uint8: a bright square moving right by ``speed`` px/frame."""
    video = np.full((frames, size, size, 3), 20, dtype=np.uint8)
    for t in range(frames):
        x = 4 + speed * t
        video[t, 18 : 18 + side, x : x + side] = (230, 200, 60)
    return video


def test_static_video_scores_zero() -> None:
    video = moving_square(speed=0)
    assert flicker(video) == 0.0
    assert flicker_score(video) == 1.0
    assert warping_error(video) < 1e-6
    assert motion_magnitude(video) < 1e-3


def test_flicker_is_mean_absolute_frame_difference() -> None:
    video = np.zeros((3, 4, 4, 3), dtype=np.uint8)
    video[1] = 10
    video[2, :, :2] = 30  # |10 - 0| = 10 everywhere; then half 20, half 10 -> 15
    assert flicker(video) == pytest.approx((10 + 15) / 2)
    assert flicker_score(video) == pytest.approx((255 - 12.5) / 255)


def test_noise_video_flickers() -> None:
    noise = np.random.default_rng(0).integers(0, 256, (FRAMES, SIZE, SIZE, 3), dtype=np.uint8)
    assert flicker(noise) > 60.0  # uniform noise: E|a - b| = 85
    assert flicker(noise) > 10 * flicker(moving_square(speed=2))
    assert flicker_score(noise) < 0.75


def test_shuffling_frames_raises_warping_error() -> None:
    video = moving_square(speed=2)
    order = np.random.default_rng(0).permutation(FRAMES)
    assert not np.array_equal(order, np.arange(FRAMES))
    smooth = warping_error(video)
    shuffled = warping_error(video[order])
    assert smooth < 1e-4
    assert shuffled > 10 * smooth + 1e-5


def test_motion_magnitude_of_translating_square() -> None:
    expected = 2.0 / math.hypot(SIZE, SIZE)
    assert motion_magnitude(moving_square(speed=2)) == pytest.approx(expected, rel=0.3)
    assert motion_magnitude(moving_square(speed=4)) > 1.5 * motion_magnitude(moving_square(speed=2))


@pytest.mark.parametrize("size", [8, 64])
def test_optical_flow_on_small_frames(size: int) -> None:
    prev = np.full((size, size, 3), 20, dtype=np.uint8)
    prev[size // 4 : size // 2, size // 4 : size // 2] = 230
    nxt = np.roll(prev, 2, axis=1)
    flow = optical_flow(prev, nxt)
    assert flow.shape == (size, size, 2)
    assert flow.dtype == np.float32
    if size >= 16:  # an 8x8 frame has too little structure to ask for accuracy
        inside = flow[size // 4 : size // 2, size // 4 + 2 : size // 2]
        assert inside[..., 0].mean() == pytest.approx(2.0, abs=0.3)
        assert abs(inside[..., 1].mean()) < 0.3


def test_video_quality_matches_individual_metrics() -> None:
    video = moving_square(speed=3)
    quality = video_quality(video)
    assert isinstance(quality, VideoQuality)
    assert quality.flicker == flicker(video)
    assert quality.warping_error == pytest.approx(warping_error(video), rel=1e-6, abs=1e-12)
    assert quality.motion_magnitude == pytest.approx(motion_magnitude(video), rel=1e-6)
    with pytest.raises(AttributeError):
        quality.flicker = 0.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("frames", "match"),
    [
        (np.zeros((4, 8, 8, 3), dtype=np.float32), "uint8"),
        (np.zeros((4, 8, 8), dtype=np.uint8), "shape"),
        (np.zeros((4, 8, 8, 4), dtype=np.uint8), "shape"),
        (np.zeros((1, 8, 8, 3), dtype=np.uint8), "at least 2 frames"),
        (np.zeros((4, 0, 8, 3), dtype=np.uint8), "non-empty"),
        ([[[[0, 0, 0]]]] * 2, "numpy array"),
    ],
)
@pytest.mark.parametrize(
    "metric", [flicker, flicker_score, warping_error, motion_magnitude, video_quality]
)
def test_bad_input_raises(frames: object, match: str, metric: object) -> None:
    with pytest.raises(ValueError, match=match):
        metric(frames)  # type: ignore[operator]


def test_optical_flow_bad_input_raises() -> None:
    frame = np.zeros((8, 8, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="same shape"):
        optical_flow(frame, np.zeros((8, 9, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        optical_flow(frame, frame.astype(np.float32))
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        optical_flow(frame[..., 0], frame[..., 0])


def test_validate_video_returns_input() -> None:
    video = moving_square(speed=1)
    assert validate_video(video, min_frames=2) is video
