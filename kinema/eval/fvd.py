"""Frechet video distance with a pluggable clip feature extractor.

``fvd`` fits a Gaussian to the features of each clip set and returns the Frechet distance
between the two Gaussians. Clips are numpy ``uint8`` arrays of shape ``(T, H, W, 3)`` (RGB);
extractors map a list of ``N`` clips to ``(N, D)`` float64 features. The default,
``ShapesMotionFeatures``, is a small hand-made descriptor (no network, not I3D); the
standard I3D features are available through ``I3DFeatures`` given its weights file.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from kinema.eval.video_metrics import optical_flow, validate_video

# Eigenvalues of a covariance below -_PSD_TOLERANCE * (largest |eigenvalue|) mean the
# matrix is not a covariance; smaller negative values are round-off and clipped to 0.
_PSD_TOLERANCE = 1e-6

I3D_WEIGHTS_NAME = "i3d_torchscript.pt"
I3D_NUM_FRAMES = 16
I3D_SIZE = 224


class FeatureExtractor(Protocol):
    """Maps ``N`` clips, each ``(T, H, W, 3)`` uint8 RGB, to ``(N, D)`` float64 features."""

    def __call__(self, clips: Sequence[np.ndarray]) -> np.ndarray: ...


def _symmetrize(matrix: np.ndarray) -> np.ndarray:
    """``(D, D)`` -> its symmetric part ``(M + M^T) / 2``."""
    return (matrix + matrix.T) / 2.0


def _psd_eigh(matrix: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Eigen-decomposition of a symmetric PSD ``(D, D)`` matrix with round-off clipped to 0.

    Returns eigenvalues ``(D,)`` >= 0 and eigenvectors ``(D, D)`` (columns).
    """
    eigvals, eigvecs = np.linalg.eigh(matrix)
    scale = max(float(np.abs(eigvals).max(initial=0.0)), np.finfo(np.float64).tiny)
    if eigvals.min(initial=0.0) < -_PSD_TOLERANCE * scale:
        raise ValueError(f"{name} is not positive semi-definite (eigenvalue {eigvals.min():.3g})")
    return np.clip(eigvals, 0.0, None), eigvecs


def _check_gaussian(mu: np.ndarray, sigma: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate a mean ``(D,)`` and covariance ``(D, D)``; return them as float64."""
    mu = np.asarray(mu, dtype=np.float64)
    sigma = np.asarray(sigma, dtype=np.float64)
    if mu.ndim != 1:
        raise ValueError(f"mu{name} must have shape (D,), got {mu.shape}")
    if sigma.shape != (mu.shape[0], mu.shape[0]):
        raise ValueError(f"sigma{name} must have shape {(mu.shape[0],) * 2}, got {sigma.shape}")
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise ValueError(f"mu{name} and sigma{name} must be finite")
    return mu, sigma


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray
) -> float:
    """Frechet (2-Wasserstein squared) distance between two Gaussians.

    ``mu1``, ``mu2`` are ``(D,)`` means and ``sigma1``, ``sigma2`` ``(D, D)`` covariances;
    returns ``|mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^{1/2})``. The trace of the matrix square
    root is computed as the sum of square roots of the eigenvalues of the symmetric PSD
    matrix ``S1^{1/2} S2 S1^{1/2}`` (same spectrum as ``S1 S2``), which stays real and exact
    for singular covariances (fewer samples than dimensions). Covariances are symmetrised
    and tiny negative eigenvalues from round-off are clipped to 0; the result is >= 0.
    """
    mu1, sigma1 = _check_gaussian(mu1, sigma1, "1")
    mu2, sigma2 = _check_gaussian(mu2, sigma2, "2")
    if mu1.shape != mu2.shape:
        raise ValueError(
            f"mu1 and mu2 must have the same dimension, got {mu1.shape} and {mu2.shape}"
        )
    sigma1, sigma2 = _symmetrize(sigma1), _symmetrize(sigma2)
    eigvals1, eigvecs1 = _psd_eigh(sigma1, "sigma1")
    _psd_eigh(sigma2, "sigma2")
    sqrt_sigma1 = (eigvecs1 * np.sqrt(eigvals1)) @ eigvecs1.T
    product_eigvals = np.linalg.eigvalsh(_symmetrize(sqrt_sigma1 @ sigma2 @ sqrt_sigma1))
    trace_sqrt = float(np.sqrt(np.clip(product_eigvals, 0.0, None)).sum())
    diff = mu1 - mu2
    distance = float(diff @ diff) + float(np.trace(sigma1) + np.trace(sigma2)) - 2.0 * trace_sqrt
    return max(distance, 0.0)


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(D,)`` and unbiased covariance ``(D, D)`` of ``(N, D)`` features, ``N >= 2``."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2:
        raise ValueError(f"features must have shape (N, D), got {features.shape}")
    if features.shape[0] < 2:
        raise ValueError(f"need at least 2 feature rows for a covariance, got {features.shape[0]}")
    if not np.isfinite(features).all():
        raise ValueError("features must be finite")
    return features.mean(axis=0), np.atleast_2d(np.cov(features, rowvar=False))


def _validate_clips(clips: Sequence[np.ndarray], name: str = "clips") -> None:
    """Check that ``clips`` is a non-empty sequence of ``(T, H, W, 3)`` uint8 arrays."""
    if len(clips) == 0:
        raise ValueError(f"{name} is empty")
    for i, clip in enumerate(clips):
        try:
            validate_video(clip)
        except ValueError as err:
            raise ValueError(f"{name}[{i}]: {err}") from None


def resample_clip(clip: np.ndarray, num_frames: int, size: int) -> np.ndarray:
    """Resample a ``(T, H, W, 3)`` uint8 clip to ``(num_frames, size, size, 3)`` uint8.

    Time: nearest source index (halves round up) of ``num_frames`` evenly spaced points over
    ``[0, T - 1]`` (frames repeat when ``T < num_frames``). Space: ``cv2.resize`` to ``size x size`` without
    keeping the aspect ratio, ``INTER_AREA`` when shrinking and ``INTER_LINEAR`` when enlarging.
    """
    validate_video(clip)
    indices = np.floor(np.linspace(0, clip.shape[0] - 1, num_frames) + 0.5).astype(np.int64)
    shrinking = size <= min(clip.shape[1], clip.shape[2])
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return np.stack(
        [cv2.resize(clip[i], (size, size), interpolation=interpolation) for i in indices]
    )


class ShapesMotionFeatures:
    """Default FVD feature extractor: a hand-made appearance + motion descriptor (numpy/OpenCV).

    This is NOT I3D: distances computed with it are not comparable to published FVD numbers,
    only to each other. It is meant for the Shapes world and similar simple scenes and is
    sensitive to appearance (colours), layout (where colour sits in the frame) and motion
    statistics (how much, where and which way things move); it knows nothing of semantics.

    Each clip is resampled to 16 frames of 32x32 (``resample_clip``), scaled to [0, 1], and
    described by the concatenation of (144 values):

    - colour histogram of all frames, 4x4x4 RGB bins, normalised to sum 1 (64);
    - mean colour of each cell of a 4x4 grid over the mean frame (48);
    - mean absolute temporal difference (channel mean) of each 4x4 grid cell, averaged over
      the 15 frame pairs (16);
    - histogram of per-pixel temporal difference magnitudes over all pairs, 8 fixed bins,
      normalised (8);
    - DIS optical flow of 4 evenly spaced pairs of consecutive *source* frames (resized to
      32x32, so no pair is a repeated frame): mean dx and mean dy in 32x32-grid pixels per
      source frame, and a 6-bin histogram of flow magnitudes, normalised (8). A 1-frame clip
      gets zero flow.

    Motion terms are per frame, so clip sets should share frame count and frame rate for
    them to be comparable.
    """

    num_frames = 16
    size = 32
    grid = 4
    colour_bins = 4
    diff_edges = (0.0, 0.01, 0.03, 0.1, 0.2, 0.4, 0.6, 0.8, np.inf)
    flow_edges = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, np.inf)
    flow_pairs = 4

    @property
    def dim(self) -> int:
        """Feature dimension ``D``."""
        cells = self.grid * self.grid
        diff_bins = len(self.diff_edges) - 1
        flow_bins = len(self.flow_edges) - 1
        return self.colour_bins**3 + 3 * cells + cells + diff_bins + 2 + flow_bins

    def _resize(self, frames: np.ndarray) -> np.ndarray:
        """``(T, H, W, 3)`` uint8 -> ``(T, size, size, 3)`` uint8, same frames."""
        return resample_clip(frames, len(frames), self.size)

    def _cell_means(self, image: np.ndarray) -> np.ndarray:
        """``(size, size, ...)`` -> ``(grid, grid, ...)`` means over equal square cells."""
        cell = self.size // self.grid
        return image.reshape(self.grid, cell, self.grid, cell, *image.shape[2:]).mean(axis=(1, 3))

    def _colour_histogram(self, clip: np.ndarray) -> np.ndarray:
        """``(T, size, size, 3)`` uint8 -> ``(colour_bins^3,)`` normalised RGB histogram."""
        q = (clip.astype(np.int64) * self.colour_bins) // 256
        index = (q[..., 0] * self.colour_bins + q[..., 1]) * self.colour_bins + q[..., 2]
        counts = np.bincount(index.ravel(), minlength=self.colour_bins**3)
        return counts / counts.sum()

    def _flow_stats(self, clip: np.ndarray) -> np.ndarray:
        """``(T, H, W, 3)`` uint8 -> ``(2 + bins,)`` mean dx, dy and magnitude histogram."""
        if len(clip) < 2:
            flows = np.zeros((1, self.size, self.size, 2), dtype=np.float32)
        else:
            starts = np.unique(np.linspace(0, len(clip) - 2, self.flow_pairs).round().astype(int))
            flows = np.stack([optical_flow(*self._resize(clip[t : t + 2])) for t in starts])
        magnitudes = np.linalg.norm(flows, axis=-1).ravel()
        hist = np.histogram(magnitudes, bins=self.flow_edges)[0]
        return np.concatenate([flows.mean(axis=(0, 1, 2)), hist / hist.sum()])

    def clip_features(self, clip: np.ndarray) -> np.ndarray:
        """Features ``(D,)`` float64 of one ``(T, H, W, 3)`` uint8 clip."""
        small = resample_clip(clip, self.num_frames, self.size)
        pixels = small.astype(np.float64) / 255.0
        abs_diff = np.abs(np.diff(pixels, axis=0)).mean(axis=-1)
        diff_hist = np.histogram(abs_diff.ravel(), bins=self.diff_edges)[0]
        return np.concatenate(
            [
                self._colour_histogram(small),
                self._cell_means(pixels.mean(axis=0)).ravel(),
                self._cell_means(abs_diff.mean(axis=0)).ravel(),
                diff_hist / diff_hist.sum(),
                self._flow_stats(clip),
            ]
        )

    def __call__(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        """Features ``(N, D)`` float64 of ``N`` clips, each ``(T, H, W, 3)`` uint8."""
        _validate_clips(clips)
        return np.stack([self.clip_features(clip) for clip in clips])


class I3DFeatures:
    """I3D features of the standard FVD network (Unterthiner et al. 2019), from TorchScript.

    ``path`` must point at ``i3d_torchscript.pt``, the Kinetics-400 I3D export used by
    StyleGAN-V and the common PyTorch FVD implementations; kinema never downloads it. Each
    clip is resampled to 16 frames of 224x224 (``resample_clip``), scaled to [-1, 1] and fed
    as ``(N, 3, T, H, W)`` float32 to ``model(videos, rescale=False, resize=False,
    return_features=True)``, which returns the 400-d pre-logit features.
    """

    def __init__(self, path: str | Path, *, device: str = "cpu", batch_size: int = 8) -> None:
        """Load the TorchScript module at ``path`` onto ``device`` (CPU by default)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"I3D TorchScript weights not found at '{path}'. Obtain {I3D_WEIGHTS_NAME} "
                "(the I3D export used by StyleGAN-V / common FVD code) yourself, place it "
                "there or pass its path; kinema does not download weights."
            )
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        import torch

        self._torch = torch
        self.device = device
        self.batch_size = batch_size
        with warnings.catch_warnings():
            # The FVD I3D only exists as TorchScript; its loader's deprecation notice is moot.
            warnings.filterwarnings("ignore", ".*torch.jit.load.*deprecated", DeprecationWarning)
            model = torch.jit.load(str(path), map_location="cpu")
        self.model: Any = model.eval().to(device)

    def preprocess(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        """``N`` uint8 clips -> ``(N, 3, 16, 224, 224)`` float32 network input in [-1, 1]."""
        _validate_clips(clips)
        videos = np.stack([resample_clip(clip, I3D_NUM_FRAMES, I3D_SIZE) for clip in clips])
        videos = videos.astype(np.float32) / 127.5 - 1.0
        return np.ascontiguousarray(videos.transpose(0, 4, 1, 2, 3))

    def __call__(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        """Features ``(N, D)`` float64 of ``N`` clips, each ``(T, H, W, 3)`` uint8."""
        torch = self._torch
        _validate_clips(clips)
        batches = []
        with torch.no_grad():
            for start in range(0, len(clips), self.batch_size):
                videos = torch.from_numpy(self.preprocess(clips[start : start + self.batch_size]))
                out = self.model(
                    videos.to(self.device), rescale=False, resize=False, return_features=True
                )
                batches.append(out.detach().cpu().to(torch.float64).numpy())
        features = np.concatenate(batches)
        if features.ndim != 2 or features.shape[0] != len(clips):
            raise ValueError(f"I3D returned shape {features.shape}, expected ({len(clips)}, D)")
        return features


def _check_features(features: np.ndarray, num_clips: int, name: str) -> np.ndarray:
    """Validate an extractor's ``(N, D)`` output for ``num_clips`` clips; return float64."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] != num_clips:
        raise ValueError(
            f"extractor returned shape {features.shape} for {num_clips} {name} clips, "
            f"expected ({num_clips}, D)"
        )
    return features


def fvd(
    generated_clips: Sequence[np.ndarray],
    reference_clips: Sequence[np.ndarray],
    extractor: FeatureExtractor | None = None,
) -> float:
    """Frechet video distance between two clip sets (lower is closer).

    Both sets are sequences of at least 2 ``(T, H, W, 3)`` uint8 clips. ``extractor``
    (default ``ShapesMotionFeatures()``, whose values are not comparable to published FVD)
    maps each set to ``(N, D)`` features; the result is ``frechet_distance`` between the
    Gaussians fitted to the two feature sets.
    """
    for name, clips in (("generated_clips", generated_clips), ("reference_clips", reference_clips)):
        if len(clips) < 2:
            raise ValueError(f"{name} needs at least 2 clips for a covariance, got {len(clips)}")
        _validate_clips(clips, name)
    extractor = ShapesMotionFeatures() if extractor is None else extractor
    generated = _check_features(extractor(generated_clips), len(generated_clips), "generated")
    reference = _check_features(extractor(reference_clips), len(reference_clips), "reference")
    if generated.shape[1] != reference.shape[1]:
        raise ValueError(
            f"feature dimensions differ: generated {generated.shape[1]}, reference {reference.shape[1]}"
        )
    return frechet_distance(*gaussian_stats(generated), *gaussian_stats(reference))
