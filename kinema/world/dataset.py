"""A streaming data set of world clips for training: rendered on the fly, no disk needed.

Each batch comes from one bucket (size, frame count, fps), so clips in a batch stack; buckets
are drawn by weight, which is how one set of weights learns images (1 frame) and clips of
several lengths and aspect ratios together. The stream is a pure function of (seed, rank,
worker): the same seed replays the same batches.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from kinema.io.frames import to_tensor
from kinema.world.captions import canonical_caption, caption
from kinema.world.render import render
from kinema.world.sampler import random_scene
from kinema.world.spec import Scene, WorldError, check_render_request


@dataclass(frozen=True)
class Bucket:
    width: int
    height: int
    num_frames: int  # 1 for images
    fps: float = 8.0

    def __post_init__(self):
        check_render_request(self.width, self.height, self.num_frames, self.fps)

    @property
    def duration(self) -> float:
        return max(self.num_frames - 1, 1) / self.fps


@dataclass
class ShapesBatch:
    video: torch.Tensor  # (B, 3, T, H, W) float32 in [-1, 1]
    captions: list[str]
    scenes: list[Scene]
    bucket: Bucket


class ShapesDataset(IterableDataset):
    """Endless batches of (video, captions, scenes), one bucket per batch.

    Args:
        buckets: the shapes to draw from.
        batch_size: clips per batch.
        seed: base seed; the stream also depends on rank and data-loader worker.
        weights: relative frequency of each bucket (default: equal).
        paraphrase: random caption paraphrases (True) or the canonical caption.
        rank, world_size: this process's shard under torch.distributed.
    """

    def __init__(
        self,
        buckets: Sequence[Bucket],
        batch_size: int,
        seed: int = 0,
        weights: Sequence[float] | None = None,
        paraphrase: bool = True,
        rank: int = 0,
        world_size: int = 1,
    ):
        if not buckets:
            raise WorldError("ShapesDataset needs at least one bucket")
        if batch_size < 1:
            raise WorldError(f"batch_size must be at least 1, got {batch_size}")
        if weights is not None and (
            len(weights) != len(buckets) or min(weights) < 0 or sum(weights) <= 0
        ):
            raise WorldError("weights must be one non-negative number per bucket, not all zero")
        self.buckets = list(buckets)
        self.batch_size = batch_size
        self.seed = seed
        self.weights = np.asarray(
            weights if weights is not None else [1.0] * len(buckets), np.float64
        )
        self.paraphrase = paraphrase
        self.rank = rank
        self.world_size = world_size

    def __iter__(self) -> Iterator[ShapesBatch]:
        info = get_worker_info()
        worker = info.id if info is not None else 0
        rng = np.random.default_rng([self.seed, self.rank, worker])
        words = random.Random(int(rng.integers(2**63)))
        p = self.weights / self.weights.sum()
        while True:
            bucket = self.buckets[int(rng.choice(len(self.buckets), p=p))]
            yield self._batch(bucket, rng, words)

    def _batch(self, bucket: Bucket, rng: np.random.Generator, words: random.Random) -> ShapesBatch:
        scenes, clips, texts = [], [], []
        for _ in range(self.batch_size):
            scene = random_scene(rng, bucket.duration, bucket.width, bucket.height)
            scenes.append(scene)
            texts.append(caption(scene, words) if self.paraphrase else canonical_caption(scene))
            clips.append(
                to_tensor(render(scene, bucket.width, bucket.height, bucket.num_frames, bucket.fps))
            )
        return ShapesBatch(torch.stack(clips), texts, scenes, bucket)
