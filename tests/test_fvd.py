"""Tests for kinema.eval.fvd: Frechet distance, default features, I3D loading, pluggable API."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg

from kinema.eval.fvd import (
    I3DFeatures,
    ShapesMotionFeatures,
    frechet_distance,
    fvd,
    gaussian_stats,
    resample_clip,
)


def square_clip(
    rng: np.random.Generator, speed: int, colour: tuple[int, int, int], frames: int = 9
) -> np.ndarray:
    """``(frames, 48, 48, 3)`` uint8: a 12 px square at a random start moving right."""
    video = np.full((frames, 48, 48, 3), 20, dtype=np.uint8)
    y, x0 = int(rng.integers(4, 30)), int(rng.integers(2, 10))
    for t in range(frames):
        x = x0 + speed * t
        video[t, y : y + 12, x : x + 12] = colour
    return video


def clip_set(seed: int, speed: int, colour: tuple[int, int, int], n: int = 6) -> list[np.ndarray]:
    """``n`` square clips with random positions."""
    rng = np.random.default_rng(seed)
    return [square_clip(rng, speed, colour) for _ in range(n)]


def random_covariance(rng: np.random.Generator, dim: int) -> np.ndarray:
    """A well-conditioned random ``(dim, dim)`` SPD matrix."""
    a = rng.standard_normal((dim, dim))
    return a @ a.T / dim + 0.1 * np.eye(dim)


YELLOW = (230, 200, 60)
BLUE = (60, 200, 230)


def test_frechet_distance_diagonal_closed_form() -> None:
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.standard_normal(5), rng.standard_normal(5)
    s1, s2 = rng.uniform(0.1, 2.0, 5), rng.uniform(0.1, 2.0, 5)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(s1) - np.sqrt(s2)) ** 2)
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(
        expected, rel=1e-10
    )


def test_frechet_distance_matches_scipy_sqrtm() -> None:
    rng = np.random.default_rng(1)
    dim = 8
    mu1, mu2 = rng.standard_normal(dim), rng.standard_normal(dim)
    s1, s2 = random_covariance(rng, dim), random_covariance(rng, dim)
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    diff = mu1 - mu2
    expected = diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean).real
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-6)


def test_frechet_distance_identity_and_symmetry() -> None:
    rng = np.random.default_rng(2)
    mu1, mu2 = rng.standard_normal(6), rng.standard_normal(6)
    s1, s2 = random_covariance(rng, 6), random_covariance(rng, 6)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-9)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(
        frechet_distance(mu2, s2, mu1, s1), rel=1e-9
    )
    # Singular covariance (fewer samples than dimensions) stays well defined.
    mu, sigma = gaussian_stats(rng.standard_normal((3, 10)))
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-9)


def test_frechet_distance_bad_input_raises() -> None:
    eye = np.eye(3)
    with pytest.raises(ValueError, match="same dimension"):
        frechet_distance(np.zeros(3), eye, np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match="shape"):
        frechet_distance(np.zeros(3), np.eye(2), np.zeros(3), eye)
    with pytest.raises(ValueError, match="positive semi-definite"):
        frechet_distance(np.zeros(3), -eye, np.zeros(3), eye)
    with pytest.raises(ValueError, match="finite"):
        frechet_distance(np.full(3, np.nan), eye, np.zeros(3), eye)


def test_gaussian_stats() -> None:
    features = np.random.default_rng(3).standard_normal((20, 4))
    mu, sigma = gaussian_stats(features)
    np.testing.assert_allclose(mu, features.mean(axis=0))
    np.testing.assert_allclose(sigma, np.cov(features, rowvar=False))
    with pytest.raises(ValueError, match="at least 2"):
        gaussian_stats(features[:1])
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        gaussian_stats(features[0])


def test_resample_clip_shape_and_time_indices() -> None:
    clip = np.zeros((5, 40, 60, 3), dtype=np.uint8)
    clip[:, :, :, 0] = np.arange(5, dtype=np.uint8)[:, None, None] * 50
    out = resample_clip(clip, num_frames=9, size=32)
    assert out.shape == (9, 32, 32, 3)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out[:, 0, 0, 0], [0, 50, 50, 100, 100, 150, 150, 200, 200])


def test_shapes_motion_features() -> None:
    extractor = ShapesMotionFeatures()
    clips = clip_set(0, 2, YELLOW, n=3)
    features = extractor(clips)
    assert features.shape == (3, extractor.dim)
    assert features.dtype == np.float64
    assert np.isfinite(features).all()
    np.testing.assert_array_equal(features, extractor(clips))
    odd = [np.zeros((1, 20, 30, 3), dtype=np.uint8), np.zeros((40, 64, 64, 3), dtype=np.uint8)]
    assert extractor(odd).shape == (2, extractor.dim)
    with pytest.raises(ValueError, match="empty"):
        extractor([])
    with pytest.raises(ValueError, match=r"clips\[1\].*uint8"):
        extractor([clips[0], clips[1].astype(np.float32)])


def test_fvd_self_zero_and_separates_sets() -> None:
    moving = clip_set(0, 2, YELLOW)
    same_kind = clip_set(1, 2, YELLOW)
    recoloured = clip_set(1, 2, BLUE)
    static = clip_set(1, 0, YELLOW)
    assert fvd(moving, moving) == pytest.approx(0.0, abs=1e-9)
    baseline = fvd(moving, same_kind)
    assert fvd(moving, recoloured) > baseline
    assert fvd(moving, static) > baseline
    assert fvd(moving, recoloured) > 0.1
    assert fvd(moving, static) > 0.1


def test_fvd_needs_two_clips_per_set() -> None:
    clips = clip_set(0, 2, YELLOW, n=2)
    with pytest.raises(ValueError, match="generated_clips needs at least 2 clips"):
        fvd(clips[:1], clips)
    with pytest.raises(ValueError, match="reference_clips needs at least 2 clips"):
        fvd(clips, clips[:1])


def test_fvd_with_custom_extractor() -> None:
    def mean_std(clips: Sequence[np.ndarray]) -> np.ndarray:
        return np.array([[clip.mean(), clip.std()] for clip in clips], dtype=np.float64)

    a, b = clip_set(0, 2, YELLOW), clip_set(1, 0, BLUE)
    expected = frechet_distance(*gaussian_stats(mean_std(a)), *gaussian_stats(mean_std(b)))
    assert fvd(a, b, extractor=mean_std) == pytest.approx(expected)

    with pytest.raises(ValueError, match="extractor returned shape"):
        fvd(a, b, extractor=lambda clips: np.zeros((len(clips) + 1, 2)))


def test_i3d_missing_weights_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="i3d_torchscript.pt"):
        I3DFeatures(tmp_path / "missing" / "i3d_torchscript.pt")


_FAKE_I3D_SOURCE = '''
import torch


class FakeI3D(torch.nn.Module):
    """Stands in for the FVD I3D: same call signature, reports what it was given."""

    def forward(
        self,
        x: torch.Tensor,
        rescale: bool = True,
        resize: bool = True,
        return_features: bool = False,
    ) -> torch.Tensor:
        dims = [1, 2, 3, 4]
        mean = x.mean(dim=dims)
        shape = [float(x.shape[i]) for i in range(1, 5)]
        flags = [float(rescale), float(resize), float(return_features)]
        extra = [torch.full_like(mean, v) for v in shape + flags]
        return torch.stack([mean, x.amin(dim=dims), x.amax(dim=dims)] + extra, dim=1)
'''


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_i3d_features_call_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    (tmp_path / "fake_i3d.py").write_text(_FAKE_I3D_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    from fake_i3d import FakeI3D  # type: ignore[import-not-found]

    weights = tmp_path / "i3d_torchscript.pt"
    torch.jit.script(FakeI3D()).save(str(weights))

    extractor = I3DFeatures(weights, batch_size=2)
    white = np.full((9, 48, 48, 3), 255, dtype=np.uint8)
    black = np.zeros((20, 64, 80, 3), dtype=np.uint8)
    square = clip_set(0, 2, YELLOW, n=1)[0]
    features = extractor([white, black, square])

    assert features.shape == (3, 10)
    assert features.dtype == np.float64
    mean, low, high = features[:, 0], features[:, 1], features[:, 2]
    np.testing.assert_allclose(mean[:2], [1.0, -1.0], atol=1e-6)
    assert low.min() >= -1.0 and high.max() <= 1.0
    np.testing.assert_array_equal(features[:, 3:7], [[3, 16, 224, 224]] * 3)
    np.testing.assert_array_equal(features[:, 7:], [[0, 0, 1]] * 3)  # rescale, resize, features

    clips = clip_set(0, 2, YELLOW, n=3)
    assert fvd(clips, clips, extractor=extractor) == pytest.approx(0.0, abs=1e-9)
