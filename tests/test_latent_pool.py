"""The latent pool: a model's own latents paired with world clips, and the decoder fine-tune on it."""

import json
import os
import subprocess
import sys

import pytest
import torch
from cli_helpers import assert_user_error, run_kinema
from model_helpers import tiny_model
from test_train import free_port

from kinema.io.frames import to_tensor
from kinema.train.latent_pool import (
    LatentPool,
    LatentPoolError,
    build_latent_pool,
    crop_pair,
    join_pools,
    load_latent_pool,
    pool_batches,
    pool_meta,
    save_latent_pool,
)


@pytest.fixture(scope="module")
def pool_file(tmp_path_factory):
    """Two clips sampled by a tiny untrained model, saved as a pool."""
    from kinema.api import load

    folder = tiny_model(tmp_path_factory.mktemp("tiny"), micro_conditioning=True, perturb=0.05)
    pipe = load(str(folder))
    seen = []
    pool = build_latent_pool(pipe, 2, (0.5, 0.9), on_clip=seen.append)
    assert seen == [0, 1]
    return save_latent_pool(pool, folder / "pool.safetensors", pool_meta("tiny", 2, (0.5, 0.9)))


def test_pool_pairs_world_clips_with_sampled_latents_from_their_own_start(pool_file):
    from kinema.models import MODELS, load_vae

    pool = load_latent_pool(pool_file, latent_channels=16)
    assert len(pool) == 2 and pool.video.dtype == torch.uint8
    assert pool.video.shape == (2, 17, 64, 64, 3) and pool.latents.shape == (2, 16, 5, 16, 16)
    assert ((pool.start_time >= 0.5) & (pool.start_time <= 0.9)).all()
    # sampled from the clip's own latents noised part-way, so they stay near them (but not on
    # them): closer to their own clip's latents than to the other clip's
    vae = load_vae(MODELS["kinema-tiny"] / "vae.safetensors")
    with torch.no_grad():
        video = to_tensor(pool.video.numpy())
        clean = vae.to_model(vae.encode(video)[0])
    own = (pool.latents.float() - clean).pow(2).mean(dim=(1, 2, 3, 4))
    other = (pool.latents.float() - clean.flip(0)).pow(2).mean(dim=(1, 2, 3, 4))
    assert (own > 0).all() and (own < other).all(), (own, other)


def test_crop_pair_cuts_the_same_region_of_clip_and_latents():
    spatial = 4
    latents = torch.arange(16 * 16).float().view(1, 1, 1, 16, 16)
    video = latents.repeat_interleave(spatial, -1).repeat_interleave(spatial, -2)
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        v, z = crop_pair(video, latents, 32, spatial, gen)
        assert v.shape[-2:] == (32, 32) and z.shape[-2:] == (8, 8)
        assert torch.equal(v[..., ::spatial, ::spatial], z)
    v, z = crop_pair(video, latents, 64, spatial, gen)  # as big as the clip: uncropped
    assert v is video and z is latents


def test_pool_batches_are_videos_in_range_and_float_latents():
    pool = LatentPool(
        torch.randint(0, 256, (3, 5, 8, 8, 3), dtype=torch.uint8),
        torch.randn(3, 4, 2, 2, 2).half(),
        torch.tensor([0.5, 0.6, 0.7]),
    )
    video, latents = next(pool_batches(pool, 4, torch.Generator().manual_seed(0)))
    assert video.shape == (4, 3, 5, 8, 8) and latents.shape == (4, 4, 2, 2, 2)
    assert video.min() >= -1 and video.max() <= 1 and latents.dtype == torch.float32


def test_joined_pools_keep_every_pair_and_refuse_other_shapes():
    def pool(n, start, frames=5):
        return LatentPool(
            torch.randint(0, 256, (n, frames, 8, 8, 3), dtype=torch.uint8),
            torch.randn(n, 4, 2, 2, 2).half(),
            torch.full((n,), start),
        )

    high, low = pool(3, 0.7), pool(2, 0.3)
    joined = join_pools([high, low])
    assert len(joined) == 5
    assert torch.equal(joined.video[3:], low.video)
    assert torch.equal(joined.latents[:3], high.latents)
    assert joined.start_time.tolist() == pytest.approx([0.7] * 3 + [0.3] * 2)
    assert join_pools([high]) is high
    with pytest.raises(LatentPoolError, match=r"pool 2 holds clips \(9, 8, 8, 3\)"):
        join_pools([high, pool(1, 0.5, frames=9)])
    with pytest.raises(LatentPoolError, match="no latent pools"):
        join_pools([])


def test_pool_batches_train_the_decoder_on_the_pool_latents(pool_file):
    from kinema.models import MODELS, load_vae
    from kinema.train.distributed import DistInfo
    from kinema.train.vae_task import VAETask

    vae = load_vae(MODELS["kinema-tiny"] / "vae.safetensors")
    encoder_before = {k: v.clone() for k, v in vae.encoder.state_dict().items()}
    pool = load_latent_pool(pool_file)
    task = VAETask(batch_size=1, crop=32, init=vae, decoder_only=True, pool=pool, pool_share=1.0)
    batch = next(task.batches(DistInfo(), seed=0))
    assert isinstance(batch, tuple) and batch[0].shape[-1] == 32 and batch[1].shape[-1] == 8
    opt = torch.optim.AdamW([p for p in vae.parameters() if p.requires_grad], lr=1e-3)
    before, logs = task.loss(vae, batch)
    for _ in range(5):
        loss, logs = task.loss(vae, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert logs["pool"] == 1.0 and loss.item() < before.item()
    for k, v in vae.encoder.state_dict().items():
        assert torch.equal(v, encoder_before[k]), k
    # with no pool share, every batch is a plain clip
    plain = VAETask(batch_size=1, crop=32, init=vae, decoder_only=True, pool=pool, pool_share=0.0)
    assert not isinstance(next(plain.batches(DistInfo(), seed=0)), tuple)
    with pytest.raises(ValueError, match="decoder-only"):
        VAETask(pool=pool)


def test_two_processes_take_pool_batches_together_and_stay_in_sync(pool_file, tmp_path):
    """Each rank decides pool or plain with the same draw: a rank on the other kind of batch
    would log other keys and hang the all-reduce."""
    from kinema.models import MODELS

    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
        str(free_port()), "-m", "kinema.cli", "train", "vae", "-o", str(tmp_path / "run"),
        "--steps", "6", "--batch-size", "1", "--crop", "16", "--log-every", "1", "--decoder-only",
        "--init", str(MODELS["kinema-tiny"] / "vae.safetensors"), "--latent-pool", str(pool_file),
        "--latent-pool", str(pool_file),  # a repeated --latent-pool joins the pools
    ]  # fmt: skip
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["ranks_max_weight_diff"] == 0.0
    rows = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert {r["pool"] for r in rows} == {0.0, 1.0}  # both kinds, each taken by both ranks


def test_load_latent_pool_names_a_missing_or_foreign_file(tmp_path, pool_file):
    with pytest.raises(LatentPoolError, match="no latent pool"):
        load_latent_pool(tmp_path / "none.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a pool")
    with pytest.raises(LatentPoolError, match="not a latent pool"):
        load_latent_pool(bad)
    with pytest.raises(LatentPoolError, match="16-channel latents; this VAE has 4"):
        load_latent_pool(pool_file, latent_channels=4)
    with pytest.raises(LatentPoolError, match="start times"):
        build_latent_pool(None, 1, (0.9, 0.5))


@pytest.mark.parametrize(
    "extra, needle",
    [(["--latent-pool", "pool.safetensors"], "--decoder-only"),
     (["--decoder-only", "--init", "VAE", "--latent-pool", "missing.safetensors"], "no latent pool"),
     (["--decoder-only", "--init", "VAE", "--latent-pool", "POOL", "--latent-pool", "gone.safetensors"],
      "no latent pool at gone.safetensors"),
     (["--decoder-only", "--init", "VAE", "--latent-pool", "POOL", "--pool-share", "2"], "[0, 1]")],
    ids=["pool-without-decoder-only", "missing-pool", "missing-second-pool", "share-out-of-range"],
)  # fmt: skip
def test_train_vae_latent_pool_bad_options_exit_2(tmp_path, pool_file, extra, needle):
    from kinema.models import MODELS

    vae = str(MODELS["kinema-tiny"] / "vae.safetensors")
    args = [vae if a == "VAE" else str(pool_file) if a == "POOL" else a for a in extra]
    result = run_kinema("train", "vae", "-o", "run", "--steps", "1", *args, cwd=tmp_path)
    assert_user_error(result, needle)
    assert not (tmp_path / "run").exists()
