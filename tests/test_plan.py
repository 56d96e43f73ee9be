"""Cost planning: the counts agree with torch's own counting and with the real chain, and the
time estimate is close to a real generation."""

from __future__ import annotations

import dataclasses
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from cli_helpers import assert_user_error, run_kinema
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from kinema.dit.transformer import DiT, DiTConfig
from kinema.pipeline.long_clip import generate_long, keyframe_count
from kinema.pipeline.plan import (
    LiveBytes,
    calibrate,
    chain_windows,
    clip_step_cache_flops,
    dit_flops,
    frames_from_seconds,
    plan_cost,
)
from kinema.pipeline.text_to_video import GenerationError, GenerationSettings, TextToVideo
from kinema.vae.causal_vae import CausalVAE, VAEConfig

TINY = DiTConfig(dim=64, ffn_dim=256, heads=2, layers=2, text_dim=32, freq_dim=32)


@pytest.mark.parametrize("cfg", [TINY, DiTConfig(**{**TINY.__dict__, "micro_conditioning": True})])
def test_analytic_flops_match_flop_counter(cfg):
    dit = DiT(cfg).eval()
    x, ctx = torch.randn(2, 16, 3, 8, 12), torch.randn(2, 16, cfg.text_dim)
    extra = {"fps": torch.full((2,), 8.0)} if cfg.micro_conditioning else {}
    # the math path spells attention out as matmuls, which the counter sees
    with torch.inference_mode(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as c:
        dit(x, torch.rand(2, 3), ctx, **extra)
    total, attention = dit_flops(cfg, 2, (3, 4, 6), 16, micro_inputs=len(extra))
    assert total == pytest.approx(c.get_total_flops(), rel=0.02)
    assert attention == 2 * cfg.layers * 4 * 72**2 * cfg.dim


def test_latent_shape_and_tokens_of_the_default_architecture():
    with torch.device("meta"):
        t2v = SimpleNamespace(vae=CausalVAE(VAEConfig()))
    for seconds, frames, latents, tokens in ((2, 17, 5, 320), (20, 161, 41, 2624)):
        s = GenerationSettings.from_seconds(seconds, 8.0, width=64, height=64)
        p = plan_cost(DiTConfig(), VAEConfig(), s)
        assert p.num_frames == frames and len(p.windows) == 1
        assert p.largest.latent_shape == (16, latents, 16, 16)
        assert (1, *p.largest.latent_shape) == TextToVideo.latent_shape(t2v, s)
        assert p.largest.tokens == tokens
        assert p.batch == 2 and p.evals_per_window == 20
        assert p.sampling_flops == 20 * p.largest.dit_flops


def test_chain_windows_are_the_ones_generate_long_makes():
    made = []

    def fake_generate(prompt, s, callback=None, conditions=None):
        made.append(s.num_frames)
        return np.zeros((s.num_frames, 8, 8, 3), np.uint8), {}

    t2v = SimpleNamespace(vae=SimpleNamespace(cfg=VAEConfig()), generate=fake_generate)
    for frames, window in ((65, 17), (69, 17), (161, 33), (33, 33)):
        made.clear()
        clip = generate_long(t2v, "x", GenerationSettings(8, 8, frames), _chain(window)).frames
        assert chain_windows(frames, window) == made
        assert len(clip) == frames
    assert chain_windows(65, 17) == [17] * 7  # each later window adds 17 - 9 = 8 frames
    assert chain_windows(69, 17) == [17] * 7 + [13]
    assert frames_from_seconds(2.0, 8.0) == 17 and frames_from_seconds(8.0, 8.0) == 65


def _chain(window: int):
    from kinema.pipeline.long_clip import ChainSettings

    return ChainSettings(window_frames=window, blend=False)


@pytest.mark.parametrize(
    ("frames", "window", "needle"),
    [(17, 33, "longer than the clip"), (65, 9, "no new frames")],
)
def test_impossible_chains_are_refused(frames, window, needle):
    with pytest.raises(GenerationError, match=needle):
        chain_windows(frames, window)


def test_chain_costs_more_flops_but_less_memory_than_one_long_sequence():
    s = GenerationSettings.from_seconds(20, 8.0)
    one, chain = (
        plan_cost(DiTConfig(), VAEConfig(), s),
        plan_cost(DiTConfig(), VAEConfig(), s, 16, 17),
    )
    assert len(chain.windows) == 19
    assert chain.sampling_flops == 19 * 20 * chain.largest.dit_flops
    assert chain.largest.attention_flops < one.largest.attention_flops / 60  # (2624 / 320)^2 = 67
    assert chain.activation_bytes < one.activation_bytes
    assert chain.weight_bytes == one.weight_bytes
    heun = plan_cost(DiTConfig(), VAEConfig(), GenerationSettings(solver="heun", guidance=1.0))
    assert (heun.evals_per_window, heun.batch) == (39, 1)


def test_step_caching_adds_what_the_cache_holds_to_the_sampling_peak():
    # 20 s in one sequence: sampling, not decoding, sets the peak (2,624 tokens)
    s = GenerationSettings.from_seconds(20, 8.0)
    plain, cached = (plan_cost(DiTConfig(), VAEConfig(), dataclasses.replace(s, cache_interval=i))
                     for i in (1, 3))  # fmt: skip
    residuals = 2 * 2 * plain.largest.tokens * DiTConfig().dim * 4  # 2 residuals x 2 branches
    # held across steps, and renewed at the end of a full evaluation (old and new both alive)
    assert plain.activation_bytes + residuals <= cached.activation_bytes
    assert cached.activation_bytes <= plain.activation_bytes + 3 * residuals
    short = GenerationSettings.from_seconds(2, 8.0)  # here the VAE's decode sets the peak
    peaks = {plan_cost(DiTConfig(), VAEConfig(), dataclasses.replace(short, cache_interval=i))
             .activation_bytes for i in (1, 3)}  # fmt: skip
    assert len(peaks) == 1


def test_hierarchical_plan_is_the_keyframe_pass_then_the_chain():
    s = GenerationSettings.from_seconds(20, 8.0)
    chain = plan_cost(DiTConfig(), VAEConfig(), s, 16, 17)
    keyed = plan_cost(DiTConfig(), VAEConfig(), s, 16, 17, keyframes=keyframe_count(161))
    assert keyframe_count(161) == 21 and len(keyed.windows) == 20
    first = keyed.windows[0]
    assert (first.frames, first.latent_shape[1], first.tokens) == (21, 6, 384)
    assert keyed.largest is first  # the keyframe pass has more tokens than a 17-frame window
    assert keyed.sampling_flops == chain.sampling_flops + 20 * first.dit_flops
    assert keyed.vae_flops == chain.vae_flops + first.vae_flops
    with pytest.raises(GenerationError, match="give its window"):
        plan_cost(DiTConfig(), VAEConfig(), s, keyframes=21)


def test_live_bytes_frees_what_is_no_longer_held():
    def fn():
        x = torch.ones(256 * 1024, device="meta")  # 1 MiB
        for _ in range(5):
            x = x * 2  # the old x dies as the new one is made: never more than 2 MiB
        return x[:10]  # a view allocates nothing

    with torch.inference_mode(), LiveBytes() as live:
        fn()
    assert live.peak == 2 * 2**20
    assert live.kernels == 6


@pytest.fixture(scope="module")
def tiny():
    import kinema

    return kinema.load().t2v


def test_time_estimate_is_within_a_factor_of_two_of_a_real_generation(tiny):
    # one thread: two threads on a CPU shared with other work run at erratic speeds. Each try
    # calibrates and then generates at once, so both see the same load; a load that changes
    # between the two gets another try, while a cost model that is off fails every try.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    prompt = "a red circle moving left on a black background"
    tries = []
    try:
        s = GenerationSettings(width=64, height=64, num_frames=17, steps=4)
        tiny.generate(prompt, s)  # warm-up
        for _ in range(3):
            cal = calibrate(tiny, repeats=2)
            estimate = plan_cost(tiny.dit.cfg, tiny.vae.cfg, s).seconds(cal)
            start = time.perf_counter()
            tiny.generate(prompt, s)
            tries.append((estimate, time.perf_counter() - start))
            if 0.5 < estimate / tries[-1][1] < 2.0:
                break
    finally:
        torch.set_num_threads(threads)
    assert any(0.5 < e / m < 2.0 for e, m in tries), tries


@pytest.mark.parametrize("solver", ["euler", "heun"])
def test_planned_step_caching_is_what_a_real_run_does(tiny, solver):
    s = GenerationSettings(width=64, height=64, num_frames=9, steps=8, solver=solver,
                           cache_interval=3)  # fmt: skip
    planned = plan_cost(tiny.dit.cfg, tiny.vae.cfg, s)
    uncached = plan_cost(tiny.dit.cfg, tiny.vae.cfg, dataclasses.replace(s, cache_interval=1))
    tiny.generate("a red circle moving left on a black background", s)
    stats = tiny.step_cache_stats.pop()
    assert planned.reused_per_window == stats["reused"] > 0
    assert uncached.reused_per_window == 0
    run, full = clip_step_cache_flops(tiny, {"num_frames": 9, "width": 64, "height": 64,
                                             "step_cache": stats})  # fmt: skip
    # the plan also counts the motion and fps inputs, which the cache's counters leave out
    assert uncached.sampling_flops / planned.sampling_flops == pytest.approx(full / run, rel=0.01)
    assert planned.total_flops < uncached.total_flops


# ----------------------------------------------------------------------------- CLI


def test_plan_prints_one_sequence_next_to_the_chain(tmp_path):
    result = run_kinema("plan", "--seconds", "8", "--size", "64x64", "--fps", "8", "--chained",
                        "2", "--hierarchical", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for needle in (
        "one sequence",
        "chain of 7 windows",
        "9 keyframes + chain",  # the keyframe pass, then the chain
        "1 x 65",
        "7 x 17",
        "16 x 17 x 16 x 16",
        "1,088",
        "320",
        "peak memory",
        "time here",
        "989 TFLOP/s",
        "calibrated here",
        "30 x batch 2, 12 cached (interval 3)",  # kinema-tiny's default: 30 steps, caching 3
    ):
        assert needle in out, (needle, out)
    assert "not calibrated" not in out
    off = run_kinema("plan", "--seconds", "2", "--cache-interval", "1", "--no-calibrate",
                     cwd=tmp_path)  # fmt: skip
    assert off.returncode == 0, off.stderr
    assert "30 x batch 2" in off.stdout and "cached" not in off.stdout


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--size", "70x64"], ["width 70", "multiple of 8"]),
        (["--size", "64"], ["WIDTHxHEIGHT"]),
        (["--seconds", "-1"], ["--seconds", "-1"]),
        (["--seconds", "2", "--chained", "4"], ["--chained 4 s", "longer than the clip"]),
        (["--seconds", "8", "--chained", "1"], ["--chained 1 s", "9 frames", "no new frames"]),
        (["--chained", "0"], ["--chained must be more than 0"]),
        (["--seconds", "8", "--hierarchical"], ["--hierarchical", "needs --chained"]),
        (["--seconds", "40", "--chained", "2", "--hierarchical"], ["41 keyframes", "33 frames"]),
    ],
    ids=[
        "size-not-multiple",
        "size-no-x",
        "negative-seconds",
        "window-too-long",
        "no-room",
        "zero",
        "hierarchical-no-chain",
        "too-many-keyframes",
    ],
)
def test_plan_bad_input_is_one_line(tmp_path, args, needles):
    assert_user_error(run_kinema("plan", *args, cwd=tmp_path), *needles)
