"""The learned production upsamplers: the shipped frame interpolator and x4 super-resolution
model against the classical baselines on held-out world scenes, their contracts as pipeline
stages, and their training tasks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from kinema.checkpoint import CheckpointError
from kinema.pipeline.text_to_video import GenerationError
from kinema.production import interp_net, sr_net
from kinema.production.interpolate import BlendInterpolator, make_interpolator, retime
from kinema.production.produce import build_stages
from kinema.production.upscale import ResizeUpscaler, make_upscaler
from kinema.world import random_scene, render

HELD_OUT = 2_718_281  # not a training stream seed


def psnr(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    mse = np.mean([np.mean((x.astype(np.float64) - y) ** 2) for x, y in zip(a, b, strict=True)])
    return float(10 * np.log10(255**2 / max(mse, 1e-10)))


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def scenes():
    rng = np.random.default_rng(HELD_OUT)
    return [random_scene(rng, 2.0, 64, 64) for _ in range(4)]


def test_the_defaults_are_the_shipped_learned_models():
    assert interp_net.SHIPPED.is_file() and sr_net.SHIPPED.is_file()
    assert make_interpolator().name == "learned" and make_upscaler().name == "learned"
    stages = build_stages()
    assert (stages.interpolator.name, stages.upscaler.name) == ("learned", "learned")
    assert build_stages(interpolator="flow", upscaler="bicubic").upscaler.name == "bicubic"


def test_learned_interpolation_beats_blending_by_2_db_on_held_out_scenes(scenes):
    learned, blend, truths = [], [], []
    for scene in scenes:
        base = render(scene, 64, 64, 9, 8)
        truth = render(scene, 64, 64, 25, 24)
        between = np.arange(25) % 3 != 0
        made = retime(base, 8, 24, make_interpolator("learned"))
        assert np.array_equal(made[::3], base)  # the base frames pass through unchanged
        learned.append(made[between])
        blend.append(retime(base, 8, 24, BlendInterpolator())[between])
        truths.append(truth[between])
    p_learned, p_blend = psnr(learned, truths), psnr(blend, truths)
    assert p_learned >= p_blend + 2, (p_learned, p_blend)


def test_learned_upscaling_beats_bicubic_and_does_not_flicker_more(scenes):
    up, bicubic = make_upscaler("learned"), ResizeUpscaler("bicubic")
    made, base, truths, flick_made, flick_bicubic = [], [], [], [], []
    for scene in scenes[:3]:
        low, truth = render(scene, 64, 64, 5, 8), render(scene, 256, 256, 5, 8)
        m, b = up(low, 256, 256), bicubic(low, 256, 256)
        assert m.shape == truth.shape and m.dtype == np.uint8
        made.append(m), base.append(b), truths.append(truth)

        def temporal_error(x, truth=truth):  # frame-to-frame change that the truth lacks
            return np.abs(
                np.diff(x.astype(np.int16), axis=0) - np.diff(truth.astype(np.int16), axis=0)
            ).mean()

        flick_made.append(temporal_error(m)), flick_bicubic.append(temporal_error(b))
    p_made, p_bicubic = psnr(made, truths), psnr(base, truths)
    assert p_made >= p_bicubic + 2, (p_made, p_bicubic)
    assert np.mean(flick_made) <= np.mean(flick_bicubic), (flick_made, flick_bicubic)


def test_learned_stages_take_any_size_and_ratio(scenes):
    frames = render(scenes[0], 40, 24, 3, 8)  # not multiples of the networks' strides
    interp = make_interpolator("learned")
    out = interp(frames, np.array([0.0, 0.25, 0.5, 1.0, 1.75, 2.0]))
    assert out.shape == (6, 24, 40, 3)
    assert np.array_equal(out[[0, 3, 5]], frames)  # whole positions are the input frames
    many = interp(frames, np.linspace(0, 2, 41))  # more in-betweens than one batch
    assert many.shape == (41, 24, 40, 3) and np.array_equal(many[20], frames[1])
    up = make_upscaler("learned")
    assert up(frames, 160, 96).shape == (3, 96, 160, 3)  # exactly x4
    assert up(frames, 100, 60).shape == (3, 60, 100, 3)  # x2.5: x4, then shrunk
    assert up(frames, 20, 12).shape == (3, 12, 20, 3)  # smaller: a plain resize
    assert up(frames, 40, 24) is frames
    with pytest.raises(ValueError, match="positions must lie in"):
        interp(frames, np.array([2.5]))


def test_unknown_names_and_bad_weights_are_one_line_errors(tmp_path):
    with pytest.raises(GenerationError, match="unknown interpolator 'rife': use one of learned"):
        build_stages(interpolator="rife")
    with pytest.raises(GenerationError, match="unknown upscaler 'sinc': use one of learned"):
        build_stages(upscaler="sinc")
    with pytest.raises(GenerationError, match="no weights file at"):
        build_stages(interpolator=str(tmp_path / "missing.safetensors"))
    with pytest.raises(
        CheckpointError, match="holds a 'kinema-interp' model, expected 'kinema-sr'"
    ):
        sr_net.load_sr(interp_net.SHIPPED)


@pytest.mark.parametrize("kind", ["interp", "sr"])
def test_training_lowers_the_loss_and_exports_weights_the_stage_loads(tmp_path, kind):
    from kinema.train.distributed import DistInfo
    from kinema.train.trainer import TrainConfig, train
    from kinema.train.upsample_tasks import InterpTask, SRTask

    if kind == "interp":
        task = InterpTask(interp_net.InterpConfig(channels=(16, 16, 8), refine_channels=8), 4)
    else:
        task = SRTask(sr_net.SRConfig(channels=8, blocks=1), 4, crop=16)
    first, _ = task.loss(task.model, next(task.batches(DistInfo(), 0)))
    cfg = TrainConfig(str(tmp_path), steps=60, lr=3e-3, warmup=5, save_every=1000, log_every=10)
    train(task, cfg, DistInfo(), progress=False)
    last = json.loads((tmp_path / "log.jsonl").read_text().splitlines()[-1])["loss"]
    assert last < 0.8 * first.item(), (first.item(), last)
    weights = tmp_path / f"{kind}.safetensors"
    stage = make_interpolator(str(weights)) if kind == "interp" else make_upscaler(str(weights))
    frames = render(random_scene(np.random.default_rng(0)), 32, 32, 3, 8)
    out = stage(frames, np.array([0.5, 1.5])) if kind == "interp" else stage(frames, 128, 128)
    assert out.dtype == np.uint8 and out.shape[1:] in ((32, 32, 3), (128, 128, 3))
