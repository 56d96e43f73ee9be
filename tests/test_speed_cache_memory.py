"""What makes kinema's transformer fast, step caching, and bounded memory, pinned on tiny models:

- the text prepared once per run (DiT.prepare_context) gives the very forward of the raw text;
  Wan's 512-token zero padding, attended as one key weighted by its count, gives what attending
  to the padding gives; RoPE as one complex product equals it pair by pair;
- the step cache never reuses below its threshold's reach (and then changes nothing), reuses
  against the last full evaluation, counts the blocks and FLOPs it ran, and is an option of
  `kinema generate` and `kinema bench shapes`; its guidance reuse is exact CFG where the
  unconditional branch runs, v_cond + (s - 1) * the last difference where it does not, and an
  evaluation of the conditional branch alone compares with and reuses the conditional rows;
- VAE decoding in pieces keeps its peak as the clip grows 4x; tiles in space blend to the whole
  frame's decode within a small difference (less than diffusers' own tiling on the same Wan VAE);
- bfloat16 transformer weights keep their fp32 islands; offloading moves a component to the
  device only around its stage, and on a CPU-only machine moves nothing and says so.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pytest
import torch

import kinema
from kinema.dit.rope import apply_rope, rope_rotations, rope_tables
from kinema.dit.transformer import DiT, DiTConfig
from kinema.pipeline.memory import Placement, cast_dit
from kinema.pipeline.plan import LiveBytes, step_cache_flops
from kinema.pipeline.text_to_video import GenerationError
from kinema.sampling.step_cache import StepCache
from kinema.vae.tiling import decode_pieces, tile_starts

torch.set_num_threads(1)

PROMPT = "a red circle moving left on a black background"


def random_dit(seed: int = 0, **kw) -> DiT:
    torch.manual_seed(seed)
    cfg = DiTConfig(**(dict(dim=32, ffn_dim=64, heads=2, layers=3, text_dim=24, freq_dim=32) | kw))
    dit = DiT(cfg).eval()
    with torch.no_grad():  # the zero-initialised parts too, so that every path shows
        for p in dit.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return dit


@pytest.fixture(scope="module")
def tiny():
    return kinema.load()


# ----------------------------------------------------------------------------- transformer


@pytest.mark.parametrize("text_len", [None, 512])  # kinema's masking, Wan's zero padding
@torch.inference_mode()
def test_text_prepared_once_gives_the_same_forward(text_len):
    dit = random_dit(text_len=text_len)
    x, t = torch.randn(2, 16, 3, 4, 6), torch.tensor([[0.9, 0.9, 0.9], [0.0, 0.4, 0.4]])
    states = torch.randn(2, 7, 24)
    mask = torch.tensor([[True] * 7, [True] * 3 + [False] * 4])
    prepared = dit.prepare_context(states, mask)
    assert torch.equal(dit(x, t, prepared), dit(x, t, states, mask))


@torch.inference_mode()
def test_wan_padding_weighs_as_the_512_tokens_it_stands_for():
    dit = random_dit(1, text_len=512)
    x, t = torch.randn(2, 16, 2, 4, 4), torch.tensor([0.7, 0.2])
    states = torch.randn(2, 9, 24)
    mask = torch.tensor([[True] * 9, [True] * 4 + [False] * 5])
    padded = torch.zeros(2, 512, 24)  # what WanPipeline feeds: zeros beyond each prompt
    padded[:, :9] = states * mask[..., None]
    # the reference: every one of the 512 tokens as its own key (kinema's masked path on the
    # padded states, nothing masked)
    reference = DiT(DiTConfig(**{**dit.cfg.__dict__, "text_len": None})).eval()
    reference.load_state_dict(dit.state_dict())
    expected = reference(x, t, padded)
    for out in (dit(x, t, states, mask), dit(x, t, padded)):
        assert (out - expected).abs().max() <= 1e-5
    full = torch.randn(1, 512, 24)  # a prompt that fills every token: no padding key at all
    assert (dit(x[:1], t[:1], full) - reference(x[:1], t[:1], full)).abs().max() <= 1e-5
    with pytest.raises(ValueError, match="at most 512"):
        dit(x, t, torch.randn(2, 513, 24))


def test_rope_as_one_complex_product_equals_the_pairwise_rotation():
    x = torch.randn(2, 24, 3, 16)
    cos, sin = rope_tables(16, (2, 3, 4))
    real, imag = x.unflatten(-1, (-1, 2)).unbind(-1)
    c, s = cos[None, :, None], sin[None, :, None]
    expected = torch.stack([real * c - imag * s, real * s + imag * c], -1).flatten(-2)
    assert torch.equal(apply_rope(x, rope_rotations(16, (2, 3, 4))), expected)
    assert torch.equal(apply_rope(x, (cos, sin)), expected)


# ----------------------------------------------------------------------------- step cache


def test_step_cache_compares_with_the_last_full_evaluation():
    """First-block residuals growing by 4% a step, threshold 10%: two steps reuse, then the
    change since the last full evaluation (12%) makes a full one, and so on."""
    calls = []

    def block(step, i, tokens):
        calls.append(i)
        return tokens + (1.0 + 0.04 * step) if i == 0 else tokens * 2

    cache = StepCache(0.1)
    outs = [cache.run(torch.ones(1, 2, 3), functools.partial(block, s), 4) for s in range(7)]
    assert cache.stats() == {"threshold": 0.1, "guidance_every": 1, "interval": 1, "evaluations": 7,
                             "reused": 4, "guidance_reused": 0, "rows_run": 7, "rows_total": 7,
                             "blocks_run": 7 + 3 * 3, "blocks_total": 28}  # fmt: skip
    # a reused step adds the other blocks' residual of the last full one (16 - 2) to its first
    # block's output (1 + 1.04)
    assert torch.allclose(outs[1], torch.full((1, 2, 3), 2.04 + 14.0))
    assert calls.count(0) == 7 and calls.count(1) == 3
    warm = StepCache(0.1, warmup=3)  # the first 3 run in full, then the same rule
    [warm.run(torch.ones(1, 2, 3), functools.partial(block, s), 4) for s in range(7)]
    assert warm.reused == 3  # steps 3, 4 and 6; step 5 is 11% from step 2, so it runs in full
    with pytest.raises(ValueError):
        StepCache(0.0)


def test_step_cache_reuses_the_conditional_rows_for_the_conditional_branch_alone():
    """A full evaluation of both branches (2 rows), then the conditional branch alone (1 row):
    the single row is compared with, and takes the residual of, row 0; its full run renews row 0
    only. Rows count as one clip through one branch."""

    def block(offset, i, tokens):
        if i == 0:
            return tokens + offset
        return tokens + torch.arange(1.0, tokens.shape[0] + 1)[:, None, None] * 10 * i

    cache = StepCache(0.1, guidance_every=2)
    both = torch.zeros(2, 2, 3)
    cache.run(both, functools.partial(block, 1.0), 3)  # rest: row 0 +30, row 1 +60
    out = cache.run(torch.zeros(1, 2, 3), functools.partial(block, 1.01), 3)  # 1% change: reuse
    assert torch.allclose(out, torch.full((1, 2, 3), 1.01 + 30.0))
    out = cache.run(torch.zeros(1, 2, 3), functools.partial(block, 2.0), 3)  # 100%: run in full
    assert torch.allclose(out, torch.full((1, 2, 3), 2.0 + 30.0))
    assert torch.allclose(cache._first[1], torch.ones(2, 3))  # row 1 kept from the first run
    assert cache.stats()["rows_run"] == 4 and cache.stats()["rows_total"] == 6
    assert cache.blocks_run == 2 * 3 + 1 + 3 and cache.blocks_total == 3 * 2 * 3


def toy_guidance(net, cache: StepCache):
    """The guided velocity of a toy network with `cache`, and plain CFG of the same network
    without reuse: scale 4, conditional text states 2.0, unconditional 0.5."""
    from kinema.sampling.guidance import TextCondition, guided_velocity

    cond = TextCondition(torch.full((1, 1, 2), 2.0), torch.ones(1, 1, dtype=torch.bool))
    uncond = TextCondition(torch.full((1, 1, 2), 0.5), torch.ones(1, 1, dtype=torch.bool))
    cached = guided_velocity(net, "v", cond, uncond, 4.0, step_cache=cache)
    plain = guided_velocity(net, "v", cond, uncond, 4.0, step_cache=StepCache(None))
    return cached, plain


def test_guidance_reuse_is_cfg_where_both_branches_run():
    """A toy network whose branches differ: evaluation 0 (warm-up) and every 2nd after it run
    both and equal plain CFG; the others run the conditional branch alone and add the last
    difference, scaled by s - 1."""
    calls = []

    def net(x, t, context, mask, step_cache=None):
        calls.append(x.shape[0])
        step_cache.evaluations += 1  # what a network's StepCache.run would count
        return x * context[:, :1, :1, None, None] + t[:, None, :, None, None]

    cache = StepCache(None, warmup=1, guidance_every=2)
    v, plain = toy_guidance(net, cache)
    x = torch.ones(1, 1, 3, 2, 2)
    assert torch.allclose(v(x, 0.9), plain(x, 0.9))  # warm-up: both branches
    # reused: v_cond(x2) + 3 * (v_cond(x) - v_uncond(x)) = 2*x2 + t + 3 * (2 - 0.5)
    assert torch.allclose(v(3 * x, 0.5), 6 * x + 0.5 + 4.5)
    assert torch.allclose(v(x, 0.3), plain(x, 0.3))  # every 2nd after the warm-up: both again
    assert calls == [2, 2, 1, 2, 2] and cache.guidance_reused == 1  # plain runs both each time
    with pytest.raises(ValueError, match="every 1 or more"):
        StepCache(None, guidance_every=0)


def test_interleaved_reuse_runs_every_nth_evaluation_in_full():
    """Warm-up 2, interval 2: evaluations 0-2, 4 and 6 run both branches through all blocks; 3
    and 5 run the conditional row through the first block and add that row's residual of the
    last full evaluation."""

    def block(offset, i, tokens):
        if i == 0:
            return tokens + offset
        return tokens + torch.arange(1.0, tokens.shape[0] + 1)[:, None, None] * 10 * offset

    cache = StepCache(None, warmup=2, interval=2)
    outs = []
    for n in range(7):
        assert cache.full_due() == (n not in (3, 5))
        rows = 2 if cache.full_due() else 1
        outs.append(cache.run(torch.zeros(rows, 2, 3), functools.partial(block, float(n)), 4))
    # evaluation 3: first block (+3) and row 0's residual from evaluation 2 (3 blocks x 10 x 2)
    assert torch.allclose(outs[3], torch.full((1, 2, 3), 3.0 + 60.0))
    assert torch.allclose(outs[4][0], torch.full((2, 3), 4.0 + 120.0))  # in full again
    stats = cache.stats()
    assert stats["reused"] == 2 and stats["interval"] == 2
    assert stats["rows_run"] == 5 * 2 + 2 and stats["rows_total"] == 14
    assert stats["blocks_run"] == 5 * 2 * 4 + 2 and stats["blocks_total"] == 7 * 2 * 4
    with pytest.raises(ValueError, match="interval"):
        StepCache(None, interval=0)
    with pytest.raises(ValueError, match="leave the threshold"):
        StepCache(0.1, interval=2)


def test_interleaved_reuse_extrapolates_the_guidance_difference():
    """Branches whose difference grows linearly from one evaluation to the next: the cached
    evaluations (conditional branch alone) extrapolate it along the line through the last two
    full ones, so they equal plain CFG exactly; holding the last difference would not."""
    calls = []

    def net(x, t, context, mask, step_cache=None):
        calls.append(x.shape[0])
        step_cache.evaluations += 1  # what a network's StepCache.run would count
        return x * context[:, :1, :1, None, None] * (2 - t[:, None, :, None, None])

    cache = StepCache(None, warmup=2, interval=2)
    v, plain = toy_guidance(net, cache)
    x = torch.ones(1, 1, 3, 2, 2)
    times = [1.0, 0.9, 0.8, 0.7, 0.6, 0.5]  # evenly spaced: the difference is linear in them
    for t in times:
        assert torch.allclose(v(x, t), plain(x, t))
    # rows per call, each cached call followed by the plain one's
    assert calls == [2, 2, 2, 2, 2, 2, 1, 2, 2, 2, 1, 2] and cache.guidance_reused == 2
    held = 2 * (2 - 0.6) + 3 * 1.5 * (2 - 0.7)  # evaluation 3 with evaluation 2's difference
    assert not torch.allclose(plain(x, 0.6), torch.full_like(x, held))


@torch.inference_mode()
def test_step_cache_in_sampling(tiny):
    t2v = tiny.t2v
    s = t2v.settings(steps=6, num_frames=9, width=32, height=32)
    cond, uncond = t2v.encode_prompt(PROMPT)
    noise = t2v.prepare_latents(s)
    plain = t2v.sample(noise, cond, uncond, s)
    never = t2v.sample(noise, cond, uncond, dataclasses.replace(s, cache_threshold=1e-9))
    assert torch.equal(never, plain)  # no reuse: the same numbers
    video = tiny(PROMPT, steps=6, num_frames=9, width=32, height=32, cache_threshold=1.0)
    stats = video.metadata["step_cache"]
    layers = t2v.dit.cfg.layers
    assert stats["evaluations"] == 6 and stats["reused"] >= 3
    assert stats["blocks_run"] == 2 * (6 + (6 - stats["reused"]) * (layers - 1))  # 2 branches
    run, full = step_cache_flops(t2v.dit.cfg, (3, 4, 4), 16, stats)
    assert full / run > 1.5 and video.frames.shape == (9, 32, 32, 3)
    # guidance reuse: after the 2 protected steps the unconditional branch runs every 2nd step
    video = tiny(PROMPT, steps=6, num_frames=9, width=32, height=32, cache_guidance_every=2)
    stats = video.metadata["step_cache"]
    assert stats["guidance_reused"] == 2 and stats["reused"] == 0
    assert stats["rows_run"] == 10 and stats["rows_total"] == 12
    assert stats["blocks_run"] == 10 * layers and stats["guidance_every"] == 2
    with pytest.raises(GenerationError, match="cache guidance every"):
        tiny(PROMPT, steps=6, num_frames=9, width=32, height=32, cache_guidance_every=0)
    # interleaved reuse, 10 steps: 4 protected, then full at 4, 6, 8 and cached at 5, 7, 9
    video = tiny(PROMPT, steps=10, num_frames=9, width=32, height=32, cache_interval=2)
    stats = video.metadata["step_cache"]
    assert stats["reused"] == 3 and stats["guidance_reused"] == 3 and stats["interval"] == 2
    assert stats["rows_run"] == 17 and stats["rows_total"] == 20
    assert stats["blocks_run"] == 7 * 2 * layers + 3 and video.frames.shape == (9, 32, 32, 3)
    with pytest.raises(GenerationError, match="cache interval decides both"):
        tiny(PROMPT, steps=6, num_frames=9, width=32, height=32, cache_interval=2,
             cache_threshold=0.1)  # fmt: skip


def test_cache_threshold_on_the_command_line(tmp_path):
    from typer.testing import CliRunner

    from kinema.cli import app

    out = tmp_path / "clip.mp4"
    result = CliRunner().invoke(app, [
        "generate", PROMPT, "--steps", "4", "--seconds", "1", "--no-c2pa", "--also", "", "-o",
        str(out), "--cache-threshold", "0.5", "--cache-guidance-every", "2", "--offload",
        "--dtype", "bfloat16",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "step cache:" in result.output and "nothing moves" in result.output
    result = CliRunner().invoke(app, [
        "bench", "shapes", "--quick", "--generator", "kinema-tiny", "--steps", "2", "--frames",
        "5", "--size", "32x32", "--cache-threshold", "0.5", "--cache-guidance-every", "2", "-o",
        str(tmp_path / "bench"),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "kinema-tiny (cache blocks 0.5, guidance every 2)" in result.output
    assert "transformer FLOPs" in result.output
    result = CliRunner().invoke(app, [
        "generate", PROMPT, "--steps", "10", "--seconds", "1", "--no-c2pa", "--also", "", "-o",
        str(out), "--cache-interval", "3",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    # 8 layers; 4 protected steps, then full at 4 and 7, cached at 5, 6, 8, 9
    assert "step cache: 100 of 160 transformer blocks run (1.60x" in result.output
    result = CliRunner().invoke(app, [
        "generate", PROMPT, "-o", str(out), "--cache-interval", "2", "--cache-threshold", "0.1",
    ])  # fmt: skip
    # kinema.cli.main prints a GenerationError as one line and exits 2
    assert isinstance(result.exception, GenerationError)
    assert "cache interval decides both" in str(result.exception)


# ----------------------------------------------------------------------------- memory


def decode_peak(fn) -> int:
    with torch.inference_mode(), LiveBytes() as live:
        fn()
    return live.peak


def test_decoding_memory_does_not_grow_with_the_clip(tiny):
    """kinema-tiny's VAE through TextToVideo.decode (into uint8 frames piece by piece), and a
    random Wan VAE's stream: 4x the frames, at most 1.2x the peak."""
    t2v = tiny.t2v
    torch.manual_seed(0)
    short, long = torch.randn(1, 16, 16, 4, 4), torch.randn(1, 16, 64, 4, 4)
    a, b = decode_peak(lambda: t2v.decode(short)), decode_peak(lambda: t2v.decode(long))
    assert b <= 1.2 * a, (a, b)
    frames = t2v.decode(short)  # the pieces are the whole clip's decode, rounded
    with torch.inference_mode():
        whole = t2v.vae.decode(t2v.vae.from_model(short))[0].clamp(-1, 1)
    expected = ((whole + 1) * 127.5).round().permute(1, 2, 3, 0).numpy()
    assert frames.shape == (61, 16, 16, 3) and np.abs(frames - expected).max() <= 1

    vae = wan_vae()
    a = decode_peak(lambda: [p.sum() for p in decode_pieces(vae, short[:, :, :4])])
    b = decode_peak(lambda: [p.sum() for p in decode_pieces(vae, long[:, :, :16])])
    assert b <= 1.2 * a, (a, b)


def wan_vae():
    from kinema.vae.wan_vae import WanVAE, WanVAEConfig

    torch.manual_seed(0)
    return WanVAE(WanVAEConfig(base_dim=8, dim_mult=(1, 2, 4, 4))).eval()


def test_tile_starts_cover_the_frame():
    assert tile_starts(16, 16, 4) == [0] and tile_starts(10, 16, 4) == [0]
    assert tile_starts(28, 12, 4) == [0, 8, 16] and tile_starts(30, 12, 4) == [0, 8, 16, 18]


@torch.inference_mode()
def test_tiled_decode_matches_whole_frames():
    """A random Wan VAE (its norms are per pixel; its middle attention sees the whole frame, so
    tiles are an approximation): a smooth clip encoded and decoded whole and in tiles."""
    diffusers = pytest.importorskip("diffusers")
    from kinema.convert.wan import vae_key_to_diffusers

    vae = wan_vae()
    h = 96
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, h), indexing="ij")
    video = torch.stack([torch.stack([torch.sin(3 * xx + t), yy, xx * yy]) for t in range(5)], 1)
    z, _ = vae.encode(video[None])  # (1, 16, 2, 12, 12)
    whole = torch.cat(list(decode_pieces(vae, z)), 2)
    tiled = torch.cat(list(decode_pieces(vae, z, tile=8, overlap=2)), 2)  # tiles at 0 and 4
    diff = (tiled - whole).abs()
    # with diffusers' tile geometry (64 px tiles, 16 px overlap): less than diffusers' tiling
    ref = diffusers.AutoencoderKLWan(base_dim=8, dim_mult=[1, 2, 4, 4]).eval()
    to_diffusers = lambda k: vae_key_to_diffusers(k, vae.cfg)  # noqa: E731
    ref.load_state_dict({to_diffusers(k): v for k, v in vae.state_dict().items()})
    ref.enable_tiling(tile_sample_min_height=64, tile_sample_min_width=64,
                      tile_sample_stride_height=48, tile_sample_stride_width=48)  # fmt: skip
    theirs = (ref.decode(z).sample - whole).abs()
    assert diff.mean() <= theirs.mean() and diff.mean() < 0.06, (diff.mean(), theirs.mean())
    assert diff.max() <= theirs.max(), (diff.max(), theirs.max())


@torch.inference_mode()
def test_bfloat16_weights_keep_their_fp32_islands():
    dit = random_dit(2)
    x, t, ctx = torch.randn(2, 16, 2, 4, 4), torch.tensor([0.8, 0.3]), torch.randn(2, 5, 24)
    expected = dit(x, t, ctx)
    cast_dit(dit, torch.bfloat16)
    assert dit.blocks[0].self_attn.q.weight.dtype == torch.bfloat16
    assert dit.time_embedding[0].weight.dtype == torch.float32
    assert dit.blocks[0].modulation.dtype == torch.float32
    out = dit(x, t, ctx)
    assert out.dtype == torch.float32
    assert (out - expected).norm() / expected.norm() < 0.05


def test_offloading_moves_a_component_only_around_its_stage(monkeypatch, tiny):
    import kinema.pipeline.memory as memory

    moves = []
    monkeypatch.setattr(memory, "move_to", lambda part, device: moves.append(str(device)))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    placement = Placement("cuda", offload=True)  # the logic, without a GPU
    with placement.working(torch.nn.Linear(2, 2)):
        assert moves == ["cuda"]
    assert moves == ["cuda", "cpu"]
    monkeypatch.undo()
    cpu = Placement("cpu", offload=True)
    assert not cpu.offload and "nothing moves" in cpu.notes[0]
    offloaded = kinema.load(offload=True)
    video = offloaded(PROMPT, steps=2, num_frames=5, width=32, height=32)
    same = tiny(PROMPT, steps=2, num_frames=5, width=32, height=32)
    assert np.array_equal(video.frames, same.frames)
    assert any("nothing moves" in n for n in video.metadata["notes"])
