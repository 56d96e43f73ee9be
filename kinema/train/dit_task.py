"""Training the diffusion transformer: flow matching on VAE latents of world clips.

Captions are drawn from a pool whose text states are computed once (the text encoder is frozen
and costs more than a step of this model); every time a caption is used, its scene is placed
anew, so one caption stands for endlessly many clips. Each batch is one bucket (size, length),
so the model learns images and clips of several lengths and aspect ratios with one set of
weights. Some samples reveal latent frames (first, first+last, keyframes, a prefix) with t = 0:
the one conditioning mechanism, trained from the start. Some samples come as direction pairs
(kinema/world/pairs.py): a scene and its mirror image with the same noise and time. With
direction focus, some batches hold only such pairs of movers with their first frame revealed:
the task where the caption's direction words alone say where the object goes next. Count pairs
are a scene and the same scene with one object taken out, same noise and time, captioned
canonically (encoded as they are drawn): only the caption says whether the object is there.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from kinema.checkpoint import save_weights
from kinema.dit.transformer import DiT, DiTConfig
from kinema.io.frames import to_tensor
from kinema.sampling.schedules import shift_time
from kinema.train.distributed import DistInfo
from kinema.vae.causal_vae import CausalVAE
from kinema.world import vocab
from kinema.world.dataset import Bucket
from kinema.world.motion import motion_strength
from kinema.world.pairs import (
    SWAPPED_SHAPE,
    canonical_captions,
    caption_pair,
    mirrored,
    reshaped,
    without_one,
)
from kinema.world.render import render
from kinema.world.sampler import place, random_scene
from kinema.world.spec import Scene

DIT_BUCKETS = (
    Bucket(64, 64, 1),
    Bucket(64, 64, 9),
    Bucket(64, 64, 17),
    Bucket(96, 64, 17),
    Bucket(64, 96, 9),
    Bucket(64, 64, 33),
    Bucket(64, 64, 17, fps=1.0),  # 16 s at 1 fps: the keyframe pass of hierarchical long clips
    Bucket(64, 64, 17, fps=4.0),
)
DIT_WEIGHTS = (1.0, 2.0, 4.0, 1.0, 0.5, 0.5, 1.0, 0.5)


@dataclass
class DiTBatch:
    latents: torch.Tensor  # (B, C, F, H, W) normalised clean latents
    context: torch.Tensor  # (B, L, D)
    mask: torch.Tensor  # (B, L) bool
    known: torch.Tensor  # (B, F) bool: revealed frames
    known_t: torch.Tensor  # (B,) flow time of the revealed frames (noise augmentation), often 0
    motion: torch.Tensor  # (B,) motion strength 0..255 from the ground truth, NaN when dropped
    fps: torch.Tensor  # (B,) frames per second, NaN when dropped
    partner: torch.Tensor  # (B,) long: whose noise and time each sample takes (itself, or the
    # first of its direction pair)
    focused: torch.Tensor  # (B,) bool: in a pair whose kind gets the pair focus


class CaptionPool:
    """Scenes (without positions) with one caption each and its text states, computed once; for
    scenes with a left/right/up/down mover also the mirrored caption's states (else None)."""

    def __init__(self, encoder, size: int, seed: int, cache: Path | None = None):
        if cache is not None and cache.exists():
            data = torch.load(cache, weights_only=False)
        else:
            rng, words = np.random.default_rng(seed), random.Random(seed)
            scenes = [random_scene(rng) for _ in range(size)]
            # one in four captions is canonical, the rest paraphrases
            pairs = [caption_pair(s, words if i % 4 else None) for i, s in enumerate(scenes)]
            captions = [a for a, _ in pairs]
            mirrors = [b for _, b in pairs]
            states = self._encode(encoder, captions)
            encoded = iter(self._encode(encoder, [b for b in mirrors if b is not None]))
            mirror_states = [None if b is None else next(encoded) for b in mirrors]
            data = {"scenes": [sc.to_dict() for sc in scenes], "captions": captions, "states": states,
                    "mirror_states": mirror_states,
                    "empty": self._encode(encoder, [""])[0]}  # fmt: skip
            if cache is not None:
                torch.save(data, cache)
        self.scenes = [Scene.from_dict(d) for d in data["scenes"]]
        self.captions = data["captions"]
        self.states = data["states"]
        self.mirror_states = data["mirror_states"]
        self.empty = data["empty"]
        self.encoder = encoder  # for captions made during training (count pairs')

    def encode(self, texts: list[str]) -> list[torch.Tensor]:
        """Text states of captions outside the pool, as the pool's are made."""
        return self._encode(self.encoder, texts)

    @staticmethod
    def _encode(encoder, texts: list[str]) -> list[torch.Tensor]:
        states = []
        for i in range(0, len(texts), 64):
            s, m = encoder(texts[i : i + 64])
            states += [s[j, : int(m[j].sum())].half() for j in range(len(s))]
        return states

    def __len__(self) -> int:
        return len(self.scenes)


def stack_states(states: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    length = max(s.shape[0] for s in states)
    out = torch.zeros(len(states), length, states[0].shape[1])
    mask = torch.zeros(len(states), length, dtype=torch.bool)
    for i, s in enumerate(states):
        out[i, : s.shape[0]] = s.float()
        mask[i, : s.shape[0]] = True
    return out, mask


def reveal_mask(frames: int, rng: np.random.Generator, mode: str | None = None) -> torch.Tensor:
    """Which latent frames a training sample reveals: first / first+last / keyframes / prefix,
    drawn, or the mode given."""
    known = torch.zeros(frames, dtype=torch.bool)
    if frames < 2:
        return known
    if mode is None:
        mode = rng.choice(["first", "first_last", "keyframes", "prefix"], p=[0.5, 0.2, 0.15, 0.15])
    if mode == "first":
        known[0] = True
    elif mode == "first_last":
        known[0] = known[-1] = True
    elif mode == "keyframes":
        known[rng.choice(frames, size=max(1, frames // 3), replace=False)] = True
    else:
        known[: int(rng.integers(1, frames))] = True
    return known


def pair_weights(latents: torch.Tensor, partner: torch.Tensor, focus: float,
                 floor: float = 0.1) -> torch.Tensor:  # fmt: skip
    """(B, 1, F, H, W) loss weights: 1 + focus * where each pair's two clean latents differ,
    scaled per frame so that the largest difference gets the whole focus; both samples of a pair
    get the same map, samples without a partner get 1. floor: differences below this (latents are
    normalised to about unit scale) never count as a whole difference, so a frame where the pair
    is all but identical is not weighted by its noise."""
    b = latents.shape[0]
    second = partner != torch.arange(b, device=partner.device)
    diff = (latents - latents[partner]).abs().mean(dim=1, keepdim=True)  # 0 where unpaired
    diff[partner[second]] = diff[second]  # the pair's first sample gets its second's map
    scale = diff.amax(dim=(3, 4), keepdim=True).clamp(min=floor)
    return 1 + focus * diff / scale


def frame_change_error(residual: torch.Tensor, unknown: torch.Tensor) -> torch.Tensor:
    """Mean squared frame-to-frame change of the prediction's residual (B, C, F, H, W) over
    pairs of consecutive frames that are both generated (unknown (B, F) float): 0 where the
    error is the same in every frame, large where it flips between frames. A plain MSE scores a
    clip that is wrong the same way in every frame like one that is wrong differently in each;
    only the second flickers."""
    if residual.shape[2] < 2:
        return residual.new_zeros(())
    change = residual.diff(dim=2).pow(2).mean(dim=(1, 3, 4))  # (B, F - 1)
    both = unknown[:, 1:] * unknown[:, :-1]
    return (change * both).sum() / both.sum().clamp(min=1)


# the pair focus's names for the kinds of pair a batch holds
PAIR_KINDS = {"direction": "mirror", "count": "fewer", "shape": "reshaped"}


def focus_kinds(names) -> set[str]:
    """The batch's pair kinds for the pair focus's names (PAIR_KINDS); ValueError naming any
    unknown one."""
    unknown = set(names) - set(PAIR_KINDS)
    if unknown:
        raise ValueError(f"pair focus on {sorted(unknown)}: pairs are {', '.join(PAIR_KINDS)}")
    return {PAIR_KINDS[k] for k in names}


def check_object_counts(object_counts) -> list[float]:
    """The weights as floats; ValueError unless there is one finite, non-negative weight per
    object count (1 to vocab.MAX_OBJECTS), not all 0."""
    weights = [float(w) for w in object_counts]
    finite = all(np.isfinite(weights))
    if len(weights) != vocab.MAX_OBJECTS or not finite or min(weights) < 0 or sum(weights) <= 0:
        raise ValueError(
            f"{vocab.MAX_OBJECTS} weights, one for scenes of each count from 1 to "
            f"{vocab.MAX_OBJECTS} objects, finite, none negative and not all 0; got "
            f"{','.join(f'{w:g}' for w in weights)}"
        )
    return weights


def parse_object_counts(text: str) -> tuple[float, ...]:
    """'2,1,1' -> (2.0, 1.0, 1.0), checked by check_object_counts; ValueError saying what the
    option takes."""
    try:
        weights = tuple(float(w) for w in text.split(","))
    except ValueError:
        raise ValueError(f"comma-separated numbers, like 2,1,1; got {text!r}") from None
    check_object_counts(weights)
    return weights


def pool_pick_probs(scenes: list[Scene], object_counts) -> np.ndarray | None:
    """Probability of drawing each pool scene so that scenes of n objects come with relative
    weight object_counts[n - 1]; None for object_counts None (the uniform draw). ValueError for
    weights check_object_counts refuses, or that give no scene of the pool a chance."""
    if object_counts is None:
        return None
    weights = check_object_counts(object_counts)
    counts = np.array([len(s.objects) for s in scenes])
    per_scene = np.zeros(len(scenes))
    for n, w in enumerate(weights, start=1):
        have = counts == n
        if have.any():
            per_scene[have] = w / have.sum()
    if per_scene.sum() <= 0:
        raise ValueError(f"object counts {object_counts} leave no scene of the caption pool")
    return per_scene / per_scene.sum()


class DiTTask:
    name = "dit"

    def __init__(
        self,
        vae: CausalVAE,
        encoder,
        cfg: DiTConfig = DiTConfig(),
        batch_size: int = 8,
        pool_size: int = 6000,
        cache_dir: Path | None = None,
        caption_dropout: float = 0.1,
        reveal_prob: float = 0.3,
        motion_dropout: float = 0.1,
        max_known_noise: float = 0.2,
        reuse: int = 1,
        init: DiT | None = None,
        pair_prob: float = 0.0,
        time_shift: float = 1.0,
        direction_focus: float = 0.0,
        high_noise: float = 0.0,
        count_pairs: float = 0.0,
        shape_pairs: float = 0.0,
        pair_focus: float = 0.0,
        pair_focus_on: tuple[str, ...] = ("direction", "count", "shape"),
        frame_change: float = 0.0,
        object_counts: tuple[float, ...] | None = None,
    ):
        """reuse: optimizer steps per rendered and encoded batch (each with fresh noise and
        times); rendering and VAE encoding cost about as much as a step of the transformer.
        init: start from these weights (fine-tuning, or going on from shipped weights).
        pair_prob: chance that a sample whose scene has a mirror comes with it as a pair.
        time_shift: the sampler's schedule shift applied to the training times too, so the
        high-noise steps where a clip's layout and motion are decided get trained as often as
        the sampler visits them.
        direction_focus: share of batches made only of scenes with a left/right/up/down mover,
        each with its first frame revealed and its mirror image beside it: there the caption's
        direction words are the only thing that tells where the object goes next.
        high_noise: share of samples whose time is drawn uniformly from [0.9, 1] instead: a
        clip's direction, count and layout are decided there (benchmarks/noise_commitment.py),
        and a larger time shift that reaches it as often starves the low-noise times that keep
        frames steady.
        count_pairs: chance that a sample whose scene has two or more objects comes with the
        same placed scene less one object as a pair (kinema/world/pairs.py).
        shape_pairs: chance that a sample with a circle or a square (and not paired otherwise)
        comes with the same placed scene with one of them drawn as the other shape.
        pair_focus: extra loss weight, up to this much on top of 1, where a pair's two clean
        latents differ (pair_weights): a square's corners or the one object a count pair lacks
        are a few latent pixels, a tiny share of a plain MSE, yet they are all the caption's
        word changes.
        pair_focus_on: which pairs get it: "direction" (mirror), "count", "shape".
        frame_change: weight of frame_change_error (over latent frames) added to the loss:
        long stages that sharpen direction made frames flicker (docs/training.md), an error
        the plain MSE does not tell apart from any other.
        object_counts: relative weights of scenes with 1, 2, ... objects among the samples
        drawn from the caption pool (None: the pool's own mix, about equal). Two thirds of the
        pool's scenes hold two or three objects, a prior behind the second copy kinema-tiny
        draws of "a red circle"; 2,1,1 for a stage gained count +3.1, not significant, and cost
        shape (docs/training.md, stage 13 candidate)."""
        self.model = init.train().requires_grad_(True) if init is not None else DiT(cfg)
        self.cfg = self.model.cfg
        self.vae = vae.eval().requires_grad_(False)
        self.batch_size = batch_size
        self.caption_dropout = caption_dropout
        self.reveal_prob = reveal_prob
        self.motion_dropout = motion_dropout
        self.max_known_noise = max_known_noise
        self.reuse = reuse
        self.pair_prob = pair_prob
        self.time_shift = time_shift
        self.direction_focus = direction_focus
        self.high_noise = high_noise
        self.count_pairs = count_pairs
        self.shape_pairs = shape_pairs
        self.pair_focus = pair_focus
        self.focus_kinds = focus_kinds(pair_focus_on)
        self.frame_change = frame_change
        cache = cache_dir / f"captions_{pool_size}_pairs.pt" if cache_dir is not None else None
        self.pool = CaptionPool(encoder, pool_size, seed=1234, cache=cache)
        self.pick_probs = pool_pick_probs(self.pool.scenes, object_counts)
        self.movers = [i for i, m in enumerate(self.pool.mirror_states) if m is not None]
        if self.cfg.text_whitening and not self.model.text_whitening.fitted:
            # the same pool (same seed) on every rank, so every rank fits the same statistics
            self.model.fit_text_whitening(torch.cat([s.float() for s in self.pool.states]))

    def samples_in(self, batch: DiTBatch) -> int:
        return batch.latents.shape[0]

    def _pick(self, rng: np.random.Generator) -> int:
        """A pool index: uniform, or weighted by object count (object_counts)."""
        if self.pick_probs is None:  # the stream of earlier stages, draw for draw
            return int(rng.integers(len(self.pool)))
        return int(rng.choice(len(self.pool), p=self.pick_probs))

    @torch.inference_mode()
    def _encode(self, video: torch.Tensor) -> torch.Tensor:
        mean, _ = self.vae.encode(video)
        return self.vae.to_model(mean)

    def batches(self, info: DistInfo, seed: int) -> Iterator[DiTBatch]:
        rng = np.random.default_rng([seed, info.rank])
        p = np.array(DIT_WEIGHTS) / sum(DIT_WEIGHTS)
        while True:
            bucket = DIT_BUCKETS[int(rng.choice(len(DIT_BUCKETS), p=p))]
            focus = bucket.num_frames > 1 and rng.random() < self.direction_focus
            # fewer clips when they are longer than 17 frames, so no batch costs much more
            latent_frames = 1 + (bucket.num_frames - 1) // 4
            n = (
                self.batch_size
                if latent_frames <= 5
                else max(1, self.batch_size * 5 // latent_frames)
            )
            # (pool index, kind, partner): a pair's second sample ("mirror": the mirror image,
            # "fewer": one object less, "reshaped": a circle drawn as a square or the other way)
            # takes the first's noise; "" is a sample of its own
            picks: list[tuple[int, str, int]] = []
            pair_prob = self.pair_prob if bucket.num_frames > 1 else 0.0  # images show no motion
            if focus:
                pair_prob = 1.0
            while len(picks) < n:
                i = self.movers[int(rng.integers(len(self.movers)))] if focus else self._pick(rng)
                picks.append((i, "", len(picks)))
                paired = self.pool.mirror_states[i] is not None and rng.random() < pair_prob
                if paired and len(picks) < n:
                    picks.append((i, "mirror", len(picks) - 1))
                elif (self.count_pairs and not focus and len(picks) < n
                        and len(self.pool.scenes[i].objects) > 1
                        and rng.random() < self.count_pairs):  # fmt: skip
                    picks.append((i, "fewer", len(picks) - 1))
                elif (self.shape_pairs and not focus and len(picks) < n
                        and rng.random() < self.shape_pairs
                        and any(o.shape in SWAPPED_SHAPE
                                for o in self.pool.scenes[i].objects)):  # fmt: skip
                    picks.append((i, "reshaped", len(picks) - 1))
            clips, scenes, states, motion = [], [], [], []
            placed: Scene | None = None  # the last scene placed: a pair's first
            for i, kind, _ in picks:
                if kind == "mirror":
                    scene = mirrored(placed, bucket.width, bucket.height)
                elif kind == "fewer":
                    scene = without_one(placed, int(rng.integers(len(placed.objects))))
                elif kind == "reshaped":
                    scene = reshaped(placed, int(rng.integers(len(placed.objects))))
                else:
                    scene = placed = place(self.pool.scenes[i], rng, bucket.duration,
                                           bucket.width, bucket.height, strict=False)  # fmt: skip
                clips.append(
                    to_tensor(
                        render(scene, bucket.width, bucket.height, bucket.num_frames, bucket.fps)
                    )
                )
                strength = motion_strength(scene, bucket.duration, bucket.width, bucket.height)
                motion.append(float("nan") if rng.random() < self.motion_dropout else strength)
                scenes.append(scene)
                states.append(
                    self.pool.mirror_states[i] if kind == "mirror" else self.pool.states[i]
                )
            # count and shape pairs' captions, all of the batch's in one text encoder pass
            told = [(first, j) for j, (_, kind, first) in enumerate(picks)
                    if kind in ("fewer", "reshaped")]  # fmt: skip
            if told:
                texts = [t for a, b in told for t in canonical_captions(scenes[a], scenes[b])]
                encoded = iter(self.pool.encode(texts))
                for a, b in told:
                    states[a], states[b] = next(encoded), next(encoded)
            states = [self.pool.empty if rng.random() < self.caption_dropout else text
                      for text in states]  # fmt: skip
            latents = self._encode(torch.stack(clips).to(info.device)).clone()
            context, mask = stack_states(states)
            frames = latents.shape[2]
            known = torch.stack(
                [
                    reveal_mask(frames, rng, "first")
                    if focus
                    else reveal_mask(frames, rng)
                    if rng.random() < self.reveal_prob
                    else torch.zeros(frames, dtype=torch.bool)
                    for _ in picks
                ]
            )
            # half the revealed clips get noisier known frames, so users can loosen an image's hold
            known_t = rng.uniform(0, self.max_known_noise, size=n) * (rng.random(n) < 0.5)
            batch = DiTBatch(
                latents,
                context.to(info.device),
                mask.to(info.device),
                known.to(info.device),
                torch.tensor(known_t, dtype=torch.float32, device=info.device),
                torch.tensor(motion, dtype=torch.float32, device=info.device),
                torch.tensor(
                    [
                        float("nan") if rng.random() < self.motion_dropout else bucket.fps
                        for _ in picks
                    ],
                    dtype=torch.float32,
                    device=info.device,
                ),
                torch.tensor([p for _, _, p in picks], dtype=torch.long, device=info.device),
                self._focused(picks).to(info.device),
            )
            for _ in range(self.reuse):
                yield batch

    def _focused(self, picks: list[tuple[int, str, int]]) -> torch.Tensor:
        focused = torch.zeros(len(picks), dtype=torch.bool)
        for j, (_, kind, first) in enumerate(picks):
            if kind in self.focus_kinds:
                focused[j] = focused[first] = True
        return focused

    def draw_noise(self, batch: DiTBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Flow times (B, F) and noise like the latents; a direction pair shares both."""
        x0 = batch.latents
        b, _, f = x0.shape[:3]
        # logit-normal times (SD3), shifted towards noise like the sampler's schedule
        t = shift_time(torch.sigmoid(torch.randn(b, device=x0.device)), self.time_shift)
        if self.high_noise > 0:
            high = torch.rand(b, device=x0.device) < self.high_noise
            t = torch.where(high, 0.9 + 0.1 * torch.rand(b, device=x0.device), t)
        t = t[batch.partner, None].expand(b, f)
        t = torch.where(batch.known, batch.known_t[:, None], t)
        return t, torch.randn_like(x0)[batch.partner]

    def loss(self, model, batch: DiTBatch) -> tuple[torch.Tensor, dict[str, float]]:
        x0 = batch.latents
        t, noise = self.draw_noise(batch)
        tt = t[:, None, :, None, None]
        xt = (1 - tt) * x0 + tt * noise
        micro = self.cfg.micro_conditioning
        out = model(xt, t, batch.context, batch.mask, batch.motion if micro else None,
                    batch.fps if micro else None)  # fmt: skip
        target = noise - x0 if self.cfg.prediction == "v" else x0
        residual = out - target
        err = residual.square()  # (B, C, F, H, W)
        weight = (~batch.known).float()
        stats = {}
        if self.pair_focus > 0:
            # the plain MSE too, so runs with and without the focus compare on one scale
            plain = (err.mean(dim=(1, 3, 4)) * weight).sum() / weight.sum().clamp(min=1)
            stats["loss_mse"] = plain.item()
            own = torch.arange(len(batch.partner), device=x0.device)
            partner = torch.where(batch.focused, batch.partner, own)
            err = err * pair_weights(x0, partner, self.pair_focus)
        per_frame = err.mean(dim=(1, 3, 4))  # (B, F)
        loss = (per_frame * weight).sum() / weight.sum().clamp(min=1)
        if self.frame_change > 0:
            stats.setdefault("loss_mse", loss.item())  # as with the focus: one scale to compare
            change = frame_change_error(residual, weight)
            stats["frame_change"] = change.item()
            loss = loss + self.frame_change * change
        return loss, {"loss": loss.item(), **stats}

    def export(self, model: DiT, out_dir: Path) -> Path:
        return save_weights(out_dir / "dit.safetensors", model, "kinema-dit", model.cfg)
