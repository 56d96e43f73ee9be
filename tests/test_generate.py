"""The shipped default model through the Python API and `kinema generate` (few steps, so fast)."""

import shutil

import numpy as np
import pytest
from cli_helpers import run_kinema

import kinema
from kinema.checkpoint import CheckpointError
from kinema.io.video import read_video
from kinema.models import MODELS, resolve_model
from kinema.pipeline.text_to_video import GenerationError

PROMPT = "a red circle moving left on a black background"


@pytest.fixture(scope="module")
def pipe():
    return kinema.load()


def test_api_generates_a_clip_with_metadata(pipe, tmp_path):
    video = pipe(PROMPT, seed=3, steps=2, seconds=1.0, fps=8)
    assert video.frames.shape == (9, 64, 64, 3) and video.frames.dtype == np.uint8
    assert video.metadata["prompt"] == PROMPT and video.metadata["seed"] == 3
    assert video.metadata["model"] == "kinema-tiny" and video.metadata["steps"] == 2
    path = video.save(tmp_path / "clip.mp4")
    frames, fps, meta = read_video(path)
    assert frames.shape == video.frames.shape and fps == 8 and meta["prompt"] == PROMPT
    video.save(tmp_path / "clip.gif")
    assert len(video.save_frames(tmp_path / "frames")) == 9


def test_same_seed_same_video_and_other_sizes(pipe):
    a = pipe(PROMPT, seed=1, steps=2)
    b = pipe(PROMPT, seed=1, steps=2)
    c = pipe(PROMPT, seed=2, steps=2)
    assert np.array_equal(a.frames, b.frames) and not np.array_equal(a.frames, c.frames)
    image = pipe(PROMPT, steps=2, seconds=0)  # text to image: a one-frame video
    assert image.frames.shape == (1, 64, 64, 3)
    wide = pipe(PROMPT, steps=2, width=96, height=64, num_frames=5)
    assert wide.frames.shape == (5, 64, 96, 3)


def test_cli_generate(tmp_path):
    result = run_kinema(
        "generate", PROMPT, "-o", "out.mp4", "--steps", "2", "--seconds", "1", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-1500:]
    assert "wrote out.mp4" in result.stdout
    frames, fps, meta = read_video(tmp_path / "out.mp4")
    assert frames.shape == (9, 64, 64, 3) and meta["prompt"] == PROMPT


@pytest.mark.parametrize(
    "args, message",
    [
        (["", "-o", "x.mp4"], "prompt is empty"),
        (["a" * 2000, "-o", "x.mp4"], "limit"),
        ([PROMPT, "--model", "no-such-model", "-o", "x.mp4"], "unknown model"),
        ([PROMPT, "--size", "60x64", "-o", "x.mp4"], "nearest: 56 or 64"),
        ([PROMPT, "-o", "x.avi"], ".mp4, .gif or .webm"),
        ([PROMPT, "--shift", "0", "-o", "x.mp4"], "shift must be 0.1..20"),
        ([PROMPT, "--solver", "rk4", "-o", "x.mp4"], "unknown solver 'rk4'"),
        ([PROMPT, "--eta", "1.5", "-o", "x.mp4"], "eta must be 0..1"),
        ([PROMPT, "--eta", "nan", "-o", "x.mp4"], "eta must be 0..1"),
        ([PROMPT, "--eta-from", "2", "-o", "x.mp4"], "eta from must be a flow time 0..1"),
        ([PROMPT, "--seconds", "inf", "-o", "x.mp4"], "seconds must be 0"),
        ([PROMPT, "--seconds", "1e9", "-o", "x.mp4"], "more than half this machine's memory"),
    ],
)
def test_cli_generate_bad_input(tmp_path, args, message):
    result = run_kinema("generate", *args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-1500:]
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_corrupt_and_mismatched_checkpoints(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    shutil.copy(MODELS["kinema-tiny"] / "vae.safetensors", folder / "vae.safetensors")
    (folder / "dit.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointError, match="not a readable"):
        kinema.load(folder)
    shutil.copy(MODELS["kinema-tiny"] / "vae.safetensors", folder / "dit.safetensors")
    with pytest.raises(CheckpointError, match="expected 'kinema-dit'"):
        kinema.load(folder)
    result = run_kinema("generate", PROMPT, "--model", str(folder), "-o", "x.mp4", cwd=tmp_path)
    assert result.returncode == 2 and "kinema-dit" in result.stderr
    assert not (tmp_path / "x.mp4").exists()
    with pytest.raises(CheckpointError, match="a name or a folder path, not int"):
        kinema.load(3)
    assert resolve_model(None) == MODELS["kinema-tiny"]  # load(None) is the default model


def test_kinema_tiny_caches_steps_by_default_and_a_caller_can_turn_it_off(pipe):
    cached = pipe(PROMPT, steps=10, seconds=1.0)  # its defaults.json: cache_interval 3
    stats = cached.metadata["step_cache"]
    # 4 protected steps, then full at 4 and 7, reused at 5, 6, 8 and 9
    assert cached.metadata["cache_interval"] == 3 and stats["reused"] == 4
    off = pipe(PROMPT, steps=10, seconds=1.0, cache_interval=1)
    assert "step_cache" not in off.metadata and off.metadata["cache_interval"] == 1
    mse = np.mean((cached.frames.astype(float) - off.frames) ** 2)
    assert mse > 0 and 10 * np.log10(255**2 / mse) > 25  # the same clip, nearly
    # any cache setting a caller gives replaces the model's caching as a whole
    threshold = pipe(PROMPT, steps=10, seconds=1.0, cache_threshold=0.05)
    assert threshold.metadata["step_cache"]["interval"] == 1


def test_kinema_tiny_samples_with_fresh_noise_each_step_by_default(pipe):
    video = pipe(PROMPT, seed=4, steps=3, seconds=1.0)  # its defaults.json: eta 1
    meta = video.metadata
    assert (meta["eta"], meta["eta_from"], meta["solver"]) == (1.0, 1.0, "euler")
    again = pipe(PROMPT, seed=4, steps=3, seconds=1.0)
    ode = pipe(PROMPT, seed=4, steps=3, seconds=1.0, eta=0.0)
    assert np.array_equal(video.frames, again.frames)  # the seed draws the steps' noise too
    assert ode.metadata["eta"] == 0.0 and not np.array_equal(video.frames, ode.frames)
    # Heun has no fresh noise: naming it drops the model's eta rather than failing
    assert pipe(PROMPT, seed=4, steps=2, num_frames=1, solver="heun").metadata["eta"] == 0.0
    later = pipe(PROMPT, seed=4, steps=3, seconds=1.0, eta_from=0.9)  # not in the first step
    assert not np.array_equal(later.frames, video.frames)
    with pytest.raises(GenerationError, match="works with the euler solver, not heun"):
        pipe(PROMPT, steps=2, num_frames=1, solver="heun", eta=0.5)


def test_a_model_folder_sets_its_own_sampler_defaults(tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(MODELS["kinema-tiny"], folder)
    (folder / "defaults.json").write_text('{"steps": 3, "guidance": 1.0}')
    pipe = kinema.load(folder)
    video = pipe(PROMPT, num_frames=1)
    assert (video.metadata["steps"], video.metadata["guidance"]) == (3, 1.0)
    assert pipe(PROMPT, num_frames=1, steps=2).metadata["steps"] == 2  # the caller's win
    assert pipe.base.fps == 8.0  # kinema-tiny's base format for production
    (folder / "defaults.json").write_text(
        '{"steps": 1, "fps": 4, "native_pixels": 1024, "base_pixels": 1024}'
    )
    from kinema.production import ProductionSettings

    made = kinema.load(folder).produce(PROMPT, ProductionSettings(fps=8, width=64, height=64,
                                                                  seconds=1, expand=False))  # fmt: skip
    meta = made.metadata  # made at 4 fps and about 32x32, then interpolated and upscaled
    assert (meta["base_fps"], meta["base_width"], meta["base_frames"]) == (4, 32, 5)
    assert made.frames.shape == (9, 64, 64, 3)
    (folder / "defaults.json").write_text('{"steps": 3, "width": 96}')
    with pytest.raises(
        CheckpointError,
        match="names width; it may set steps, guidance, shift, solver, eta, eta_from, "
        "cache_threshold, cache_guidance_every, cache_interval, fps, native_pixels",
    ):
        kinema.load(folder)
