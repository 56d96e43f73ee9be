"""Training under torchrun: 2 processes on gloo, a few steps of the real VAE recipe."""

import json
import os
import socket
import subprocess
import sys
import zlib

import pytest
import torch


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_training_keeps_ranks_in_sync_and_learns(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
        "-m", "kinema.cli", "train", "vae", "-o", str(tmp_path / "run"), "--steps", "40", "--batch-size", "2",
        "--crop", "16", "--lr", "2e-3", "--log-every", "4",
    ]  # fmt: skip
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 40
    assert summary["ranks_max_weight_diff"] == 0.0
    rows = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    first, last = sum(r["loss"] for r in rows[:2]) / 2, sum(r["loss"] for r in rows[-2:]) / 2
    assert last < 0.8 * first, (first, last)
    for name in ("vae.safetensors", "state.pt", "loss.png"):
        assert (tmp_path / "run" / name).stat().st_size > 0


def test_training_resumes_from_its_checkpoint(tmp_path):
    base = [sys.executable, "-m", "kinema.cli", "train", "vae", "-o", str(tmp_path / "run"), "--batch-size", "1",
            "--crop", "16", "--log-every", "5"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([*base, "--steps", "10"], env=env, check=True, capture_output=True, timeout=300)
    result = subprocess.run(
        [*base, "--steps", "20"], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "resumed vae" in result.stdout and "at step 10" in result.stdout
    rows = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [5, 10, 15, 20]
    # wall time carries across the resume, so --minutes and the LR schedule count the whole run
    seconds = [r["seconds"] for r in rows]
    assert seconds == sorted(seconds), seconds
    # config.json keeps each sitting's command, so a recipe changed on resume stays on record
    history = json.loads((tmp_path / "run" / "config.json").read_text())["history"]
    assert [h["step"] for h in history] == [0, 10]
    assert [h["command"].split("--steps ")[1] for h in history] == ["10", "20"]
    assert history[0]["command"].startswith("kinema train vae -o ")


def test_dit_training_goes_on_from_given_weights(tmp_path):
    """`train dit --init` starts from given weights (their config wins, plus the motion, fps,
    pooled-text inputs and the text whitening when they lack them) and moves them."""
    import dataclasses

    from model_helpers import tiny_model

    from kinema.models import MODELS, load_dit

    (tmp_path / "start").mkdir()
    start = tiny_model(tmp_path / "start", micro_conditioning=False, perturb=0.05)
    cmd = [sys.executable, "-m", "kinema.cli", "train", "dit", "--vae", str(MODELS["kinema-tiny"] / "vae.safetensors"),
           "-o", str(tmp_path / "run"), "--init", str(start / "dit.safetensors"), "--steps", "3",
           "--batch-size", "1", "--pool", "16", "--dim", "64", "--layers", "2"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    before, after = (
        load_dit(start / "dit.safetensors"),
        load_dit(tmp_path / "run" / "dit.safetensors"),
    )
    # not the --dim 64 --layers 2 of the command line
    assert after.cfg == dataclasses.replace(
        before.cfg, micro_conditioning=True, pooled_text=True, text_whitening=True
    )
    assert after.text_whitening.fitted  # to the caption pool's statistics
    old, new = before.state_dict(), after.state_dict()
    # the first text layer absorbs the whitening (same function, other weights)
    diffs = [(new[k] - v).abs().max().item() for k, v in old.items() if "text_embedding.0" not in k]
    assert 0 < max(diffs) < 0.05, max(diffs)
    added = {
        k
        for k in new
        if k.startswith(("motion_embedding.", "fps_embedding.", "pooled_text_", "text_whitening."))
    }
    assert set(new) - set(old) == added != set()  # fmt: skip


def word_encoder(texts: list[str]):
    """A stand-in text encoder for data tests: one 8-d state per word, fixed by the word (a
    stable checksum: Python's str hash changes per process, and modulo a small number two words
    of a pair, "circle" and "square", could share a state in some runs)."""
    rows = [
        [torch.tensor([zlib.crc32(w.encode()) / 2**32] * 8) for w in t.split()] or [torch.zeros(8)]
        for t in texts
    ]
    length = max(len(r) for r in rows)
    states, mask = (
        torch.zeros(len(texts), length, 8),
        torch.zeros(len(texts), length, dtype=torch.bool),
    )
    for i, r in enumerate(rows):
        states[i, : len(r)], mask[i, : len(r)] = torch.stack(r), True
    return states, mask  # fmt: skip


def test_direction_pairs_are_mirrored_clips_with_the_same_noise_and_time():
    from kinema.dit.transformer import DiTConfig
    from kinema.train.distributed import DistInfo
    from kinema.train.dit_task import DiTTask
    from kinema.vae.causal_vae import CausalVAE, VAEConfig
    from kinema.world.pairs import mirrored

    vae = CausalVAE(VAEConfig(latent_channels=4, channels=(8, 16, 16), temporal_blocks=1))
    cfg = DiTConfig(
        in_channels=4, out_channels=4, dim=32, ffn_dim=64, heads=2, layers=1, text_dim=8
    )
    task = DiTTask(vae, word_encoder, cfg, batch_size=4, pool_size=40, pair_prob=1.0)  # fmt: skip
    pool = task.pool
    assert [m is not None for m in pool.mirror_states] == [
        mirrored(s) is not None for s in pool.scenes
    ]
    assert any(m is None for m in pool.mirror_states) and any(
        m is not None for m in pool.mirror_states
    )
    pairs = 0
    stream = task.batches(DistInfo(), seed=0)
    for _ in range(12):
        batch = next(stream)
        partner = batch.partner.tolist()
        if batch.latents.shape[2] == 1:  # images come unpaired
            assert partner == list(range(len(partner)))
            continue
        torch.manual_seed(0)
        t, noise = task.draw_noise(batch)
        for j, p in enumerate(partner):
            assert p in (j, j - 1)
            if p == j:
                continue
            pairs += 1
            assert torch.equal(noise[j], noise[p])
            free = ~(batch.known[j] | batch.known[p])
            assert torch.equal(t[j][free], t[p][free])
            assert not torch.equal(batch.latents[j], batch.latents[p])  # the mirrored clip
        unpaired = [
            j
            for j, p in enumerate(partner)
            if p == j and j + 1 < len(partner) and partner[j + 1] == j + 1
        ]
        for j in unpaired:  # fresh noise for samples that are not a pair
            assert not torch.equal(noise[j], noise[j + 1])  # fmt: skip
    assert pairs >= 4


def _caption_pairs_in_batches(**pairs) -> int:
    """Draw 10 batches of a tiny DiTTask with these pair options; check that each pair's second
    sample shares its partner's noise (and time, on the frames both generate) but not its clip or
    caption; return how many pairs there were."""
    from kinema.dit.transformer import DiTConfig
    from kinema.train.distributed import DistInfo
    from kinema.train.dit_task import DiTTask
    from kinema.vae.causal_vae import CausalVAE, VAEConfig

    vae = CausalVAE(VAEConfig(latent_channels=4, channels=(8, 16, 16), temporal_blocks=1))
    cfg = DiTConfig(
        in_channels=4, out_channels=4, dim=32, ffn_dim=64, heads=2, layers=1, text_dim=8
    )
    task = DiTTask(vae, word_encoder, cfg, batch_size=4, pool_size=40, pair_prob=0.0, **pairs)
    task.caption_dropout = 0.0
    stream = task.batches(DistInfo(), seed=0)
    count = 0
    for _ in range(10):
        batch = next(stream)
        torch.manual_seed(0)
        t, noise = task.draw_noise(batch)
        for j, p in enumerate(batch.partner.tolist()):
            if p == j:
                continue
            count += 1
            assert p == j - 1 and torch.equal(noise[j], noise[p])
            generated = ~batch.known[j] & ~batch.known[p]  # revealed frames keep their own time
            assert torch.equal(t[j][generated], t[p][generated])
            assert not torch.equal(batch.latents[j], batch.latents[p])  # another scene
            assert not torch.equal(batch.context[j], batch.context[p])  # and another caption
    return count


def test_count_pairs_are_one_scene_less_one_object_with_the_same_noise():
    from kinema.world.pairs import canonical_captions, without_one
    from kinema.world.spec import ObjectSpec, Scene

    two = Scene(objects=(ObjectSpec("circle", "red", "small", "still", "slow", (0.3, 0.5)),
                         ObjectSpec("circle", "red", "small", "still", "slow", (0.7, 0.5))),
                background="black")  # fmt: skip
    fewer = without_one(two, 1)
    assert fewer.objects == two.objects[:1] and without_one(fewer, 0) is None
    assert canonical_captions(two, fewer) == (
        "two small red circles standing still on a black background",
        "a small red circle standing still on a black background",
    )

    assert _caption_pairs_in_batches(count_pairs=1.0) >= 4


def test_object_counts_reweight_the_scenes_drawn_from_the_caption_pool():
    import numpy as np

    from kinema.dit.transformer import DiTConfig
    from kinema.train.dit_task import DiTTask, pool_pick_probs
    from kinema.vae.causal_vae import CausalVAE, VAEConfig
    from kinema.world.spec import ObjectSpec, Scene

    one = ObjectSpec("circle", "red", "small", "still", "slow", (0.3, 0.5))
    other = ObjectSpec("square", "blue", "small", "still", "slow", (0.7, 0.5))
    scenes = [Scene(objects=(one,), background="black")] + [
        Scene(objects=(one, other), background="black")
    ] * 3  # one single-object scene among four
    assert pool_pick_probs(scenes, None) is None  # the uniform draw of earlier stages
    probs = pool_pick_probs(scenes, (1, 1, 0))
    assert probs[0] == pytest.approx(0.5) and probs[1:] == pytest.approx([1 / 6] * 3)
    with pytest.raises(ValueError, match="leave no scene"):
        pool_pick_probs(scenes, (0, 0, 1))  # no three-object scene in this pool

    vae = CausalVAE(VAEConfig(latent_channels=4, channels=(8, 16, 16), temporal_blocks=1))
    cfg = DiTConfig(in_channels=4, out_channels=4, dim=32, ffn_dim=64, heads=2, layers=1,
                    text_dim=8)  # fmt: skip
    rng = np.random.default_rng(0)

    def single_share(**kw) -> float:
        task = DiTTask(vae, word_encoder, cfg, batch_size=4, pool_size=300, **kw)
        picks = [task._pick(rng) for _ in range(2000)]
        return float(np.mean([len(task.pool.scenes[i].objects) == 1 for i in picks]))

    assert 0.25 < single_share() < 0.42  # the pool's own mix: about a third
    assert 0.45 < single_share(object_counts=(2, 1, 1)) < 0.55
    assert single_share(object_counts=(1, 0, 0)) == 1.0


def test_shape_pairs_swap_one_circle_or_square_with_the_same_noise():
    from kinema.world.pairs import canonical_captions, reshaped
    from kinema.world.spec import ObjectSpec, Scene

    scene = Scene(objects=(ObjectSpec("triangle", "red", "small", "still", "slow", (0.3, 0.5)),
                           ObjectSpec("circle", "blue", "small", "left", "slow", (0.7, 0.5))),
                  background="black")  # fmt: skip
    other = reshaped(scene, 0)  # the only swappable object, whatever the pick
    assert other == reshaped(scene, 5)
    assert other.objects[0] == scene.objects[0]
    assert other.objects[1].shape == "square" and other.objects[1].start == (0.7, 0.5)
    assert reshaped(other, 0).objects == scene.objects  # and back
    assert reshaped(Scene(objects=scene.objects[:1], background="black"), 0) is None
    first, second = canonical_captions(scene, other)
    assert "blue circle" in first and "blue square" in second
    assert first.replace("circle", "square") == second

    assert _caption_pairs_in_batches(shape_pairs=1.0) >= 4


def test_high_noise_share_draws_times_from_the_top_of_the_schedule():
    from kinema.dit.transformer import DiTConfig
    from kinema.train.distributed import DistInfo
    from kinema.train.dit_task import DiTTask
    from kinema.vae.causal_vae import CausalVAE, VAEConfig

    vae = CausalVAE(VAEConfig(latent_channels=4, channels=(8, 16, 16), temporal_blocks=1))
    cfg = DiTConfig(
        in_channels=4, out_channels=4, dim=32, ffn_dim=64, heads=2, layers=1, text_dim=8
    )
    shares = {}
    for share in (0.0, 0.5, 1.0):
        task = DiTTask(vae, word_encoder, cfg, batch_size=4, pool_size=40, high_noise=share)
        batch = next(task.batches(DistInfo(), seed=0))
        torch.manual_seed(0)
        times = torch.cat([task.draw_noise(batch)[0][~batch.known] for _ in range(200)])
        shares[share] = (times >= 0.9).float().mean().item()
        assert times.max() <= 1.0
    # logit-normal times put a few percent above 0.9; the option adds its share on top
    assert shares[0.0] < 0.1
    assert 0.4 < shares[0.5] < 0.65
    assert shares[1.0] == 1.0


def test_direction_focus_batches_are_revealed_mirrored_movers():
    from kinema.dit.transformer import DiTConfig
    from kinema.train.distributed import DistInfo
    from kinema.train.dit_task import DiTTask
    from kinema.vae.causal_vae import CausalVAE, VAEConfig

    vae = CausalVAE(VAEConfig(latent_channels=4, channels=(8, 16, 16), temporal_blocks=1))
    cfg = DiTConfig(
        in_channels=4, out_channels=4, dim=32, ffn_dim=64, heads=2, layers=1, text_dim=8
    )
    task = DiTTask(vae, word_encoder, cfg, batch_size=4, pool_size=40, direction_focus=1.0)
    assert task.movers and len(task.movers) < len(task.pool)  # only scenes with a mirror
    stream = task.batches(DistInfo(), seed=0)
    videos = 0
    for _ in range(8):
        batch = next(stream)
        frames = batch.latents.shape[2]
        if frames == 1:  # images have no direction: ordinary batches
            continue
        videos += 1
        assert batch.partner.tolist() == [j - j % 2 for j in range(len(batch.partner))]
        assert batch.known[:, 0].all() and not batch.known[:, 1:].any()  # the first frame alone
        for j in range(1, len(batch.partner), 2):
            assert not torch.equal(batch.latents[j], batch.latents[j - 1])
    assert videos >= 3


def test_pair_focus_weights_where_a_pair_differs_for_both_samples():
    from kinema.train.dit_task import pair_weights

    latents = torch.zeros(3, 2, 1, 4, 4)
    latents[1, :, 0, 1, 2] = 1.0  # the pair (0, 1) differs at one latent pixel
    latents[2] = torch.randn(2, 1, 4, 4)  # sample 2 has no partner
    w = pair_weights(latents, torch.tensor([0, 0, 2]), focus=8.0)
    assert w.shape == (3, 1, 1, 4, 4)
    for j in (0, 1):  # both of the pair: 9 at the difference, 1 elsewhere
        assert w[j, 0, 0, 1, 2] == 9.0
        assert (w[j] == 1).sum() == 15
    assert torch.all(w[2] == 1)
    # a difference below the floor is not scaled up to the whole focus
    tiny = latents.clone()
    tiny[1, :, 0, 1, 2] = 0.01
    assert pair_weights(tiny, torch.tensor([0, 0, 2]), 8.0, floor=0.1)[1].max() < 2


def test_pair_focus_loss_logs_the_plain_mse_beside_the_weighted_loss():
    from kinema.dit.transformer import DiTConfig
    from kinema.train.distributed import DistInfo
    from kinema.train.dit_task import DiTTask
    from kinema.vae.causal_vae import CausalVAE, VAEConfig

    vae = CausalVAE(VAEConfig(latent_channels=4, channels=(8, 16, 16), temporal_blocks=1))
    cfg = DiTConfig(
        in_channels=4, out_channels=4, dim=32, ffn_dim=64, heads=2, layers=1, text_dim=8
    )
    task = DiTTask(vae, word_encoder, cfg, batch_size=4, pool_size=40, count_pairs=1.0,
                   pair_focus=8.0)  # fmt: skip
    stream = task.batches(DistInfo(), seed=0)
    batch = next(b for b in stream if (b.partner != torch.arange(len(b.partner))).any())
    second = batch.partner != torch.arange(len(batch.partner))
    assert batch.focused.sum() == 2 * second.sum()  # both samples of every count pair
    torch.manual_seed(0)
    loss, stats = task.loss(task.model, batch)
    assert stats["loss"] > stats["loss_mse"] > 0  # the focus only adds weight
    # the focus on direction pairs only leaves count pairs at the plain MSE
    task.focus_kinds = {"mirror"}
    picks = [(0, "fewer" if p != j else "", p) for j, p in enumerate(batch.partner.tolist())]
    batch.focused = task._focused(picks)
    assert not batch.focused.any()
    torch.manual_seed(0)
    loss, stats = task.loss(task.model, batch)
    assert stats["loss"] == pytest.approx(stats["loss_mse"])
    with pytest.raises(ValueError, match="pairs are direction, count, shape"):
        DiTTask(vae, word_encoder, cfg, batch_size=4, pool_size=40, pair_focus_on=("colour",))


def test_frame_change_error_scores_flipping_errors_not_steady_ones():
    from kinema.train.dit_task import frame_change_error

    unknown = torch.ones(2, 4)
    steady = torch.ones(2, 3, 4, 2, 2) * 0.5  # the same error in every frame
    assert frame_change_error(steady, unknown) == 0
    flipping = steady.clone()
    flipping[:, :, 1::2] = -0.5  # the same size of error, changing sign every frame
    assert frame_change_error(flipping, unknown) == pytest.approx(1.0)
    # a change into or out of a known (revealed) frame does not count
    one_flip = steady.clone()
    one_flip[:, :, 0] = -0.5
    known_first = torch.tensor([[0.0, 1, 1, 1]] * 2)
    assert frame_change_error(one_flip, known_first) == 0
    assert frame_change_error(one_flip, unknown) == pytest.approx(1 / 3)
    assert frame_change_error(steady[:, :, :1], unknown[:, :1]) == 0  # an image has no change


def test_frame_change_weight_adds_its_term_to_the_loss_and_logs_it():
    from kinema.dit.transformer import DiTConfig
    from kinema.train.distributed import DistInfo
    from kinema.train.dit_task import DiTTask
    from kinema.vae.causal_vae import CausalVAE, VAEConfig

    vae = CausalVAE(VAEConfig(latent_channels=4, channels=(8, 16, 16), temporal_blocks=1))
    cfg = DiTConfig(
        in_channels=4, out_channels=4, dim=32, ffn_dim=64, heads=2, layers=1, text_dim=8
    )
    task = DiTTask(vae, word_encoder, cfg, batch_size=4, pool_size=40, frame_change=2.0)
    batch = next(b for b in task.batches(DistInfo(), seed=0) if b.latents.shape[2] > 1)
    torch.manual_seed(0)
    loss, stats = task.loss(task.model, batch)
    task.frame_change = 0.0
    torch.manual_seed(0)
    plain, plain_stats = task.loss(task.model, batch)
    assert "frame_change" not in plain_stats and stats["frame_change"] > 0
    assert stats["loss_mse"] == pytest.approx(plain.item())  # the plain MSE logged beside it
    assert loss.item() == pytest.approx(plain.item() + 2.0 * stats["frame_change"], rel=1e-5)


def test_temporal_difference_error_scores_changing_errors_not_steady_ones():
    from kinema.train.vae_task import temporal_difference_error

    video = torch.rand(1, 3, 5, 8, 8) * 2 - 1
    steady = video + 0.3  # the same error in every frame
    flipping = video + 0.3 * torch.tensor([1.0, -1.0, 1.0, -1.0, 1.0]).view(1, 1, 5, 1, 1)
    assert temporal_difference_error(steady, video).item() < 1e-6
    assert temporal_difference_error(flipping, video).item() == pytest.approx(0.6, rel=1e-5)
    assert temporal_difference_error(video[:, :, :1] + 0.5, video[:, :, :1]).item() == 0.0


def test_decoder_only_fine_tune_keeps_the_encoder_and_adds_the_temporal_term(tmp_path):
    from kinema.models import load_vae
    from kinema.train.vae_task import VAETask
    from kinema.vae.causal_vae import CausalVAE, VAEConfig

    torch.manual_seed(0)
    cfg = VAEConfig(
        channels=(8, 16, 16), latent_channels=4, temporal_blocks=1, scale=2.0, shift=0.1
    )
    start = CausalVAE(cfg)
    encoder_before = {k: v.clone() for k, v in start.encoder.state_dict().items()}
    decoder_before = {k: v.clone() for k, v in start.decoder.state_dict().items()}
    task = VAETask(init=start, decoder_only=True, temporal_weight=2.0, latent_noise=0.1)
    opt = torch.optim.AdamW([p for p in start.parameters() if p.requires_grad], lr=1e-3)
    video = torch.rand(2, 3, 9, 16, 16) * 2 - 1
    for _ in range(3):
        loss, logs = task.loss(start, video)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert "temporal" in logs and logs["temporal"] > 0
    assert "temporal" not in VAETask(init=start, decoder_only=True).loss(start, video)[1]
    for k, v in start.encoder.state_dict().items():
        assert torch.equal(v, encoder_before[k]), k
    assert any(not torch.equal(v, decoder_before[k]) for k, v in start.decoder.state_dict().items())
    # the latent normalisation is the diffusion model's contract: export keeps it
    saved = load_vae(task.export(start, tmp_path))
    assert (saved.cfg.scale, saved.cfg.shift) == (2.0, 0.1)
    with pytest.raises(ValueError, match="decoder-only"):
        VAETask(init=CausalVAE(cfg), latent_noise=0.1)


def test_latent_noise_perturbs_decoding_per_clip():
    from kinema.vae.causal_vae import CausalVAE, VAEConfig

    torch.manual_seed(0)
    vae = CausalVAE(VAEConfig(channels=(8, 16, 16), latent_channels=4, temporal_blocks=1)).eval()
    video = torch.rand(8, 3, 5, 16, 16) * 2 - 1
    with torch.no_grad():
        clean = vae(video, sample=False)[0]
        noisy = vae(video, sample=False, latent_noise=1.0)[0]
    change = (noisy - clean).abs().mean(dim=(1, 2, 3, 4))
    assert change.min() > 0
    assert change.max() > 2 * change.min()  # the std is drawn per clip, not one for all


@pytest.mark.parametrize(
    "args, needle",
    [(["--decoder-only"], "--init"), (["--latent-noise", "0.1"], "--decoder-only"),
     (["--temporal-weight", "-1"], "0 or more")],
    ids=["decoder-only-without-init", "noise-without-decoder-only", "negative-weight"],
)  # fmt: skip
def test_train_vae_bad_options_exit_2(tmp_path, args, needle):
    from cli_helpers import assert_user_error, run_kinema

    result = run_kinema("train", "vae", "-o", "run", "--steps", "1", *args, cwd=tmp_path)
    assert_user_error(result, needle)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "args",
    [["dit", "--vae", "missing.safetensors"],
     ["dit", "--vae", "VAE", "--init", "missing.safetensors"],
     ["vae", "--decoder-only", "--init", "missing.safetensors"]],
    ids=["dit-missing-vae", "dit-missing-init", "vae-missing-init"],
)  # fmt: skip
def test_train_with_missing_weights_exits_2_before_making_a_run_folder(tmp_path, args):
    from cli_helpers import assert_user_error, run_kinema

    from kinema.models import MODELS

    vae = str(MODELS["kinema-tiny"] / "vae.safetensors")
    args = [vae if a == "VAE" else a for a in args]
    result = run_kinema("train", *args, "-o", "run", "--steps", "1", cwd=tmp_path)
    assert_user_error(result, "missing.safetensors")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "args, needle",
    [(["--pairs", "2"], "--pairs is a share of samples, from 0 to 1, got 2"),
     (["--high-noise", "-0.1"], "--high-noise is a share"),
     (["--time-shift", "0.5"], "--time-shift must be 1"),
     (["--frame-change", "-1"], "0 or more"),
     (["--object-counts", "2,one,1"], "comma-separated numbers, like 2,1,1"),
     (["--object-counts", "2,1"], "3 weights, one for scenes of each count"),
     (["--object-counts", "1,-1,1"], "none negative"),
     (["--object-counts", "nan,1,1"], "finite")],
    ids=["pairs", "high-noise", "time-shift", "frame-change", "counts-word", "counts-two",
         "counts-negative", "counts-nan"],
)  # fmt: skip
def test_train_dit_out_of_range_options_exit_2_with_one_line(tmp_path, args, needle):
    from cli_helpers import assert_user_error, run_kinema

    # the options are checked before the weights load: a missing --vae is not reached
    result = run_kinema("train", "dit", "--vae", "missing.safetensors", "-o", "run", *args,
                        cwd=tmp_path)  # fmt: skip
    assert_user_error(result, needle)
    assert not (tmp_path / "run").exists()
