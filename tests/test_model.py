"""Invariants of the model on tiny configs: causal VAE, DiT, RoPE, solvers, guidance,
checkpoints, and the text-to-video pipeline end to end."""

import numpy as np
import pytest
import torch

from kinema.checkpoint import CheckpointError, load_into, read_weights, save_weights
from kinema.dit.rope import apply_rope, rope_tables
from kinema.dit.transformer import DiT, DiTConfig
from kinema.pipeline.text_to_video import (
    GenerationError,
    GenerationSettings,
    TextToVideo,
    check_prompt,
)
from kinema.sampling.guidance import KnownFrames, TextCondition, guided_velocity
from kinema.sampling.schedules import flow_times, times_from
from kinema.sampling.solvers import ancestral_std, euler, heun
from kinema.vae.causal_vae import CausalVAE, VAEConfig

TINY_VAE = VAEConfig(latent_channels=4, channels=(8, 16, 16), temporal_blocks=1)
TINY_DIT = DiTConfig(
    in_channels=4, out_channels=4, dim=32, ffn_dim=64, heads=2, layers=2, text_dim=8
)


def randomize(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give zero-initialised layers weights, so tests see a model that does something."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    return module


@pytest.fixture(scope="module")
def vae():
    torch.manual_seed(0)
    return randomize(CausalVAE(TINY_VAE)).eval()


@pytest.fixture(scope="module")
def dit():
    torch.manual_seed(0)
    return randomize(DiT(TINY_DIT)).eval()


# ----------------------------------------------------------------------------- VAE


def test_vae_shapes_and_image_is_one_frame_video(vae):
    video = torch.randn(2, 3, 9, 16, 24)
    mean, logvar = vae.encode(video)
    assert mean.shape == logvar.shape == (2, 4, 3, 4, 6)
    assert vae.decode(mean).shape == video.shape
    image = torch.randn(1, 3, 1, 16, 16)
    z, _ = vae.encode(image)
    assert z.shape[2] == 1 and vae.decode(z).shape == image.shape


@torch.no_grad()
def test_vae_is_temporally_causal(vae):
    video = torch.randn(1, 3, 13, 16, 16)
    later = video.clone()
    later[:, :, 5:] = torch.randn_like(later[:, :, 5:])  # change frames 5.. (latent groups 2, 3)
    a, _ = vae.encode(video)
    b, _ = vae.encode(later)
    assert torch.equal(a[:, :, :2], b[:, :, :2])  # latents 0 (frame 0) and 1 (frames 1-4)
    assert not torch.allclose(a[:, :, 2:], b[:, :, 2:])
    # decoding: frames of latent i depend only on latents <= i
    z = torch.randn(1, 4, 4, 4, 4)
    z2 = z.clone()
    z2[:, :, 3] += 1.0
    x, x2 = vae.decode(z), vae.decode(z2)
    assert torch.equal(x[:, :, :9], x2[:, :, :9]) and not torch.allclose(x[:, :, 9:], x2[:, :, 9:])


@torch.no_grad()
def test_chunked_decode_equals_full_decode(vae):
    z = torch.randn(1, 4, 11, 4, 4)
    full = vae.decode(z)
    for chunk in (1, 3, 4):
        assert torch.allclose(vae.decode_chunked(z, chunk), full, atol=1e-5)


def test_vae_refuses_shapes_it_cannot_take(vae):
    with pytest.raises(ValueError, match=r"frame count 8 must be 1 \+ 4k \(nearest: 5 or 9\)"):
        vae.encode(torch.randn(1, 3, 8, 16, 16))
    with pytest.raises(ValueError, match=r"width 18 must be a multiple of 4 \(nearest: 16 or 20\)"):
        vae.encode(torch.randn(1, 3, 5, 16, 18))


# ----------------------------------------------------------------------------- DiT


def test_untrained_dit_predicts_zero_and_has_wan_names():
    model = DiT(TINY_DIT)
    out = model(torch.randn(1, 4, 3, 8, 8), torch.rand(1), torch.randn(1, 5, 8))
    assert out.shape == (1, 4, 3, 8, 8) and out.abs().max() == 0  # zero-initialised head
    names = set(model.state_dict())
    for key in ("patch_embedding.weight", "text_embedding.0.weight", "time_projection.1.weight",
                "blocks.0.self_attn.norm_q.weight", "blocks.0.cross_attn.k.weight", "blocks.0.norm3.weight",
                "blocks.0.ffn.0.weight", "blocks.0.modulation", "head.head.weight", "head.modulation"):  # fmt: skip
        assert key in names, key


def test_dit_any_size_and_duration_with_one_set_of_weights(dit):
    ctx = torch.randn(1, 5, 8)
    for shape in [(1, 4, 4), (3, 8, 8), (5, 4, 12), (9, 6, 4)]:
        x = torch.randn(1, 4, *shape)
        assert dit(x, torch.rand(1), ctx).shape == x.shape
    with pytest.raises(ValueError, match="not divisible by the patch size"):
        dit(torch.randn(1, 4, 3, 5, 8), torch.rand(1), ctx)


@torch.no_grad()
def test_dit_per_frame_time_and_text_matter(dit):
    x, ctx = torch.randn(2, 4, 3, 8, 8), torch.randn(2, 5, 8)
    t = torch.tensor([0.3, 0.7])
    same = dit(x, t[:, None].expand(2, 3), ctx)
    assert torch.allclose(dit(x, t, ctx), same, atol=1e-6)
    per_frame = dit(x, torch.tensor([[0.0, 0.3, 0.3], [0.0, 0.7, 0.7]]), ctx)
    assert not torch.allclose(per_frame, same)
    assert not torch.allclose(dit(x, t, ctx + 1.0), same)
    # masked-out text tokens do not matter
    mask = torch.tensor([[True, True, False, False, False]] * 2)
    ctx2 = ctx.clone()
    ctx2[:, 2:] = 99.0
    assert torch.allclose(dit(x, t, ctx, mask), dit(x, t, ctx2, mask), atol=1e-5)


def test_pooled_text_input_joins_trained_weights_without_changing_them(tmp_path, dit):
    """load_dit(add_pooled_text=True) gives weights without it a zero-output pooled-text input:
    the same function until fine-tuning moves it, and then the masked mean of the text matters."""
    from kinema.models import load_dit

    path = save_weights(tmp_path / "dit.safetensors", dit, "kinema-dit", dit.cfg)
    pooled = load_dit(path, add_pooled_text=True)
    assert pooled.cfg.pooled_text and not dit.cfg.pooled_text
    x, t, ctx = torch.randn(2, 4, 3, 8, 8), torch.tensor([0.3, 0.7]), torch.randn(2, 5, 8)
    mask = torch.tensor([[True, True, True, False, False]] * 2)
    with torch.no_grad():
        assert torch.allclose(pooled(x, t, ctx, mask), dit(x, t, ctx, mask), atol=1e-6)
    loss = pooled(x, t, ctx, mask).square().mean()
    loss.backward()
    assert pooled.pooled_text_embedding[2].weight.grad.abs().max() > 0  # it will learn
    randomize(pooled.pooled_text_embedding, seed=3)
    with torch.no_grad():
        moved = pooled(x, t, ctx, mask)
        assert not torch.allclose(moved, dit(x, t, ctx, mask), atol=1e-4)
        padded = ctx.clone()
        padded[:, 3:] = 99.0  # masked-out tokens stay out of the mean
        assert torch.allclose(pooled(x, t, padded, mask), moved, atol=1e-5)
        # one TextContext per generation gives the same as the raw states
        assert torch.allclose(pooled(x, t, pooled.prepare_context(ctx, mask)), moved, atol=1e-6)


def test_text_whitening_joins_trained_weights_without_changing_them(tmp_path, dit):
    """load_dit(add_text_whitening=True) then fit_text_whitening: the caption statistics whiten
    the text states (identity covariance on the fitting set) while the first text layers absorb
    the change, so the model computes what it did; a second fit does the same; the buffers
    travel with the weights."""
    from kinema.dit.layers import TextWhitening
    from kinema.models import load_dit

    path = save_weights(tmp_path / "dit.safetensors", dit, "kinema-dit", dit.cfg)
    whitened = load_dit(path, add_pooled_text=True, add_text_whitening=True)
    randomize(whitened.pooled_text_embedding, seed=4)  # the fold must keep this path too
    reference = DiT(whitened.cfg)
    reference.load_state_dict(whitened.state_dict())
    gen = torch.Generator().manual_seed(1)
    # anisotropic states, as a text encoder's are: a shared offset and unequal spreads
    states = torch.randn(500, 8, generator=gen) * torch.linspace(0.5, 3.0, 8) + 5.0
    x, t, ctx = torch.randn(2, 4, 3, 8, 8), torch.tensor([0.3, 0.7]), states[:10].reshape(2, 5, 8)
    mask = torch.tensor([[True, True, True, True, False]] * 2)
    assert not whitened.text_whitening.fitted
    with torch.no_grad():
        before = whitened(x, t, ctx, mask)
        assert torch.allclose(before, reference(x, t, ctx, mask), atol=1e-6)
        whitened.fit_text_whitening(states)
        assert whitened.text_whitening.fitted
        z = whitened.text_whitening(states)
        assert z.mean(0).abs().max() < 1e-3
        assert torch.allclose(torch.cov(z.T), torch.eye(8), atol=0.03)  # up to the floor
        assert torch.allclose(whitened(x, t, ctx, mask), before, atol=1e-4)
        whitened.fit_text_whitening(states[:200])  # refitting keeps the function too
        assert torch.allclose(whitened(x, t, ctx, mask), before, atol=1e-4)
        saved = save_weights(tmp_path / "w.safetensors", whitened, "kinema-dit", whitened.cfg)
        loaded = load_dit(saved)
        assert loaded.cfg.text_whitening and loaded.text_whitening.fitted
        assert torch.allclose(loaded(x, t, ctx, mask), before, atol=1e-4)
    with pytest.raises(ValueError, match="no text whitening"):
        dit.fit_text_whitening(states)
    mean, matrix = TextWhitening.statistics(torch.randn(50, 8))
    assert mean.shape == (8,) and torch.allclose(matrix, matrix.T, atol=1e-5)


def test_rope_preserves_norm_and_encodes_relative_position():
    cos, sin = rope_tables(12, (6, 1, 1))
    q = torch.randn(1, 1, 1, 12).expand(1, 6, 1, 12)
    k = torch.randn(1, 1, 1, 12).expand(1, 6, 1, 12)
    rq, rk = apply_rope(q, (cos, sin)), apply_rope(k, (cos, sin))
    assert torch.allclose(rq.norm(dim=-1), q.norm(dim=-1), atol=1e-5)
    dots = (rq[0, :, 0] @ rk[0, :, 0].T).numpy()
    assert np.allclose(dots[0, 2], dots[3, 5], atol=1e-4) and np.allclose(
        dots[1, 0], dots[5, 4], atol=1e-4
    )


# ----------------------------------------------------------------------------- sampling


def test_flow_times_and_one_euler_step_is_its_formula():
    times = flow_times(4, shift=3.0)
    assert times[0] == 1 and times[-1] == 0 and bool((times[:-1] > times[1:]).all())
    x = torch.randn(2, 3)
    v = torch.randn(2, 3)
    out = euler(lambda x_, t: v * t, x, torch.tensor([1.0, 0.6]))
    assert torch.allclose(out, x + (0.6 - 1.0) * v * 1.0)


def gaussian_velocity(mu: float, sigma: float):
    """The exact flow-matching velocity for data N(mu, sigma^2): E[eps - x0 | x_t]."""

    def velocity(x, t):
        var = (1 - t) ** 2 * sigma**2 + t**2
        centred = x - (1 - t) * mu
        return t / var * centred - (mu + (1 - t) * sigma**2 / var * centred)

    return velocity


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_stochastic_euler_keeps_the_data_distribution(eta):
    # with the exact velocity any eta samples N(mu, sigma^2): the fresh noise's std is what
    # keeps the variance right (too much or too little would widen or narrow it)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(40000, generator=gen, dtype=torch.float64)
    out = euler(gaussian_velocity(2.0, 0.5), x, flow_times(500, 1.0), eta=eta, generator=gen)
    assert abs(out.mean().item() - 2.0) < 0.01 and abs(out.std().item() / 0.5 - 1) < 0.015


def test_stochastic_euler_noise_is_the_formula_and_seeded():
    assert ancestral_std(1.0, 0.8, 1.0) == pytest.approx(0.8)  # from pure noise: all fresh
    assert ancestral_std(0.5, 0.0, 1.0) == 0 and ancestral_std(0.5, 0.4, 0.0) == 0
    assert 0 < ancestral_std(0.5, 0.4, 0.5) < ancestral_std(0.5, 0.4, 1.0) < 0.4
    x, times = torch.randn(2, 3), torch.tensor([0.9, 0.6, 0.0])
    v = torch.randn(2, 3)
    runs = [euler(lambda x_, t: v, x, times, eta=1.0, generator=torch.Generator().manual_seed(s))
            for s in (1, 1, 2)]  # fmt: skip
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])
    # one step by hand: clean and noise estimates, then the fresh draw
    z = torch.randn(2, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float32)
    s = ancestral_std(0.9, 0.6, 1.0)
    one = euler(lambda x_, t: v, x, times[:2], eta=1.0, generator=torch.Generator().manual_seed(1))
    by_hand = 0.4 * (x - 0.9 * v) + (0.6**2 - s**2) ** 0.5 * (x + 0.1 * v) + s * z
    assert torch.allclose(one, by_hand, atol=1e-6)
    # above eta_from a step is the plain Euler step: no draw, the generator untouched
    gen = torch.Generator().manual_seed(1)
    late = euler(lambda x_, t: v, x, times, eta=1.0, generator=gen, eta_from=0.7)
    assert torch.equal(late, euler(lambda x_, t: v, x, times))  # 0.9 -> 0.6, then to 0
    assert torch.equal(torch.randn(2, 3, generator=gen), z)
    with pytest.raises(ValueError, match="eta must be in"):
        euler(lambda x_, t: v, x, times, eta=1.5)


def test_heun_is_exact_for_a_velocity_linear_in_time():
    # dx/dt = t  =>  x(0) = x(1) - 1/2 ; Heun integrates linear-in-t slopes exactly
    x1 = torch.zeros(3)
    out = heun(lambda x, t: torch.full_like(x, t), x1, torch.tensor([1.0, 0.5, 0.2, 0.0]))
    euler_out = euler(lambda x, t: torch.full_like(x, t), x1, torch.tensor([1.0, 0.5, 0.2, 0.0]))
    # the last step (to t = 0) is Euler: from 0.2 to 0 the slope 0.2 is used
    expected = -(0.5 * (1.0 + 0.5) * 0.5 + 0.5 * (0.5 + 0.2) * 0.3) - 0.2 * 0.2
    assert torch.allclose(out, torch.full((3,), expected), atol=1e-6)
    assert not torch.allclose(out, euler_out)


def test_cfg_is_its_formula_and_known_frames_stay_put():
    cond = TextCondition(torch.ones(1, 2, 8), torch.ones(1, 2, dtype=torch.bool))
    uncond = TextCondition(torch.zeros(1, 1, 8), torch.ones(1, 1, dtype=torch.bool))

    def net(x, t, ctx, mask):  # "v" = mean of the context, per sample
        return torch.ones_like(x) * ctx[:, :1, :1, None, None].transpose(1, 2)

    v = guided_velocity(net, "v", cond, uncond, 3.0)(torch.zeros(1, 4, 2, 2, 2), 0.5)
    assert torch.allclose(v, torch.full_like(v, 0 + 3.0 * (1 - 0)))
    known = KnownFrames(torch.full((1, 4, 2, 2, 2), 7.0), torch.tensor([True, False]))
    seen_t = []

    def net2(x, t, ctx, mask):
        seen_t.append(t.clone())
        return torch.ones_like(x)

    x = euler(
        guided_velocity(net2, "v", cond, None, 1.0, known),
        torch.zeros(1, 4, 2, 2, 2),
        flow_times(3),
    )
    assert torch.equal(seen_t[0][0], torch.tensor([0.0, 1.0]))
    x = known.apply(x)
    assert torch.all(x[:, :, 0] == 7.0) and torch.allclose(
        x[:, :, 1], torch.full_like(x[:, :, 1], -1.0)
    )


def test_motion_strength_goes_to_the_conditional_branch_alone():
    """The unconditional branch goes without the motion strength (as it was trained with the
    input dropped), so guidance pushes towards the asked-for motion; fps goes to both."""
    cond = TextCondition(torch.ones(1, 2, 8), torch.ones(1, 2, dtype=torch.bool))
    uncond = TextCondition(torch.zeros(1, 1, 8), torch.ones(1, 1, dtype=torch.bool))
    seen = []

    def net(x, t, ctx, mask, motion=None, fps=None):  # "v" = the motion given, 0 when none
        seen.append((motion.clone(), fps.clone()))
        return torch.nan_to_num(motion)[:, None, None, None, None].expand_as(x).clone()

    v = guided_velocity(net, "v", cond, uncond, 3.0, motion=100.0, fps=8.0)(
        torch.zeros(1, 4, 2, 2, 2), 0.5
    )
    motion, fps = seen[-1]
    assert (
        motion[0] == 100.0 and torch.isnan(motion[1]) and torch.equal(fps, torch.tensor([8.0, 8.0]))
    )
    assert torch.allclose(v, torch.full_like(v, 0 + 3.0 * (100.0 - 0)))
    guided_velocity(net, "v", cond, None, 1.0, motion=100.0, fps=8.0)(
        torch.zeros(1, 4, 2, 2, 2), 0.5
    )
    assert torch.equal(seen[-1][0], torch.tensor([100.0]))  # no guidance: one branch, with it


# ----------------------------------------------------------------------------- checkpoints


def test_weights_round_trip_and_clear_errors(tmp_path, dit, vae):
    path = save_weights(tmp_path / "dit.safetensors", dit, "kinema-dit", dit.cfg)
    tensors, config = read_weights(path, "kinema-dit")
    fresh = load_into(DiT(DiTConfig(**config)), tensors, path)
    x, t, ctx = torch.randn(1, 4, 3, 4, 4), torch.rand(1), torch.randn(1, 2, 8)
    with torch.no_grad():
        assert torch.equal(fresh(x, t, ctx), dit(x, t, ctx))
    assert all(
        torch.equal(a, b)
        for a, b in zip(fresh.state_dict().values(), dit.state_dict().values(), strict=True)
    )
    with pytest.raises(CheckpointError, match="expected 'kinema-vae'"):
        read_weights(path, "kinema-vae")
    with pytest.raises(CheckpointError, match="does not match"):
        load_into(DiT(DiTConfig(**{**config, "layers": 3})), tensors, path)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a tensor file at all")
    with pytest.raises(CheckpointError, match="not a readable"):
        read_weights(bad, "kinema-dit")
    with pytest.raises(CheckpointError, match="no weights file"):
        read_weights(tmp_path / "missing.safetensors", "kinema-dit")


# ----------------------------------------------------------------------------- pipeline


class FakeEncoder:
    """A deterministic stand-in for the text encoder: token states from character codes."""

    dim = 8

    def __call__(self, prompts):
        length = max(1, max(len(p.split()) for p in prompts))
        states = torch.zeros(len(prompts), length, 8)
        mask = torch.zeros(len(prompts), length, dtype=torch.bool)
        for i, p in enumerate(prompts):
            for j, w in enumerate(p.split() or [""]):
                states[i, j] = torch.tensor([(hash(w) >> k) % 7 / 7.0 for k in range(8)])
                mask[i, j] = True
        return states, mask


@pytest.fixture(scope="module")
def pipe(vae, dit):
    return TextToVideo(FakeEncoder(), dit, vae, "tiny-test")


def test_same_seed_same_video_bit_for_bit(pipe):
    s = GenerationSettings(width=16, height=16, num_frames=9, steps=3, seed=5)
    a, timings = pipe.generate("a red circle", s)
    b, _ = pipe.generate("a red circle", s)
    c, _ = pipe.generate(
        "a red circle", GenerationSettings(width=16, height=16, num_frames=9, steps=3, seed=6)
    )
    assert a.shape == (9, 16, 16, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert set(timings) == {"encode_prompt", "sample", "decode"}


def test_progress_callback_sees_every_step(pipe):
    seen = []
    pipe.generate(
        "x",
        GenerationSettings(width=16, height=16, num_frames=1, steps=4),
        lambda i, n, x: seen.append((i, n)),
    )
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_sampling_from_part_way_runs_the_rest_of_the_same_grid(pipe):
    full = flow_times(20, 3.0)
    part = times_from(full, 0.5)
    assert part[0] == 0.5 and torch.equal(part[1:], full[full < 0.5]) and part[-1] == 0
    assert torch.equal(times_from(full, 1.0), full)
    with pytest.raises(ValueError, match=r"start time must be in \(0, 1\], got 0"):
        times_from(full, 0.0)
    s = GenerationSettings(width=16, height=16, num_frames=5, steps=20)
    cond, uncond = pipe.encode_prompt("a red circle", "")
    data = torch.randn(1, 4, 2, 2, 2)
    steps = []
    out = pipe.sample(data, cond, uncond, s, lambda i, n, x: steps.append(n), start_time=0.5)
    assert steps[0] == len(part) - 1 and out.shape == data.shape
    # starting near t = 0 barely changes data that is already clean
    near = pipe.sample(data, cond, uncond, s, start_time=1e-3)
    assert (near - data).abs().max() < 0.05 < (out - data).abs().max()
    with pytest.raises(GenerationError, match="step caching"):
        pipe.sample(
            data, cond, uncond, GenerationSettings(steps=20, cache_interval=3), start_time=0.5
        )


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(width=60), r"width 60 must be a multiple of 8 \(nearest: 56 or 64\)"),
        (dict(num_frames=16), r"frame count 16 must be 1 \+ 4k \(nearest: 13 or 17\)"),
        (dict(steps=0), "steps must be"),
        (dict(solver="rk9"), "unknown solver"),
    ],
)
def test_bad_settings_name_what_works(pipe, settings, message):
    with pytest.raises(GenerationError, match=message):
        pipe.generate("a red circle", GenerationSettings(**{"width": 16, "height": 16, **settings}))


def test_bad_prompts():
    with pytest.raises(GenerationError, match="empty"):
        check_prompt("   ")
    with pytest.raises(GenerationError, match="limit"):
        check_prompt("a" * 5000)
    assert GenerationSettings.from_seconds(2.0, 8.0).num_frames == 17
    assert GenerationSettings.from_seconds(0.0).num_frames == 1
