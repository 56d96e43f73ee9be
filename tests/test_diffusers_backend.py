"""Any local diffusers video pipeline behind kinema's Pipeline surface ("diffusers:/path"), on
tiny random pipelines built and saved here (tests/diffusers_tiny.py): WanPipeline, LTXPipeline,
CogVideoXPipeline, HunyuanVideoPipeline (text to video) and StableVideoDiffusionPipeline (image to video) give kinema
Videos with the pipeline's own frames; the CLI, the production pipeline, ShapesBench's model
generator, the serving worker and its request checks run them; what only kinema's own models
can do is refused with a message."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("diffusers")
pytest.importorskip("accelerate")  # diffusers loads Wan's transformer only through it

import diffusers_tiny  # noqa: E402

import kinema  # noqa: E402
from kinema.backends.diffusers_pipeline import pipeline_format  # noqa: E402
from kinema.pipeline.text_to_video import GenerationError  # noqa: E402

torch.set_num_threads(1)

PROMPT = "a red circle moving left on a black background"
# per pipeline: the call that makes a tiny clip, and the frames it gives
CASES = {
    "wan": (dict(width=32, height=32, seconds=1.0), (9, 32, 32, 3)),
    "ltx": (dict(width=32, height=32, num_frames=9), (9, 32, 32, 3)),
    "cogvideox": (dict(width=16, height=16, num_frames=9), (9, 16, 16, 3)),
    "hunyuan": (dict(width=16, height=16, num_frames=9), (9, 16, 16, 3)),
    "svd": (dict(width=32, height=32, num_frames=3, image=np.full((40, 48, 3), 90, np.uint8)),
            (3, 32, 32, 3)),
}  # fmt: skip


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("diffusers")
    out = {}
    for kind in CASES:
        out[kind] = root / kind
        diffusers_tiny.save(kind, out[kind])
    return out


@pytest.fixture(scope="module")
def pipes(folders):
    return {kind: kinema.load(f"diffusers:{folder}") for kind, folder in folders.items()}


@pytest.mark.parametrize("kind", list(CASES))
def test_each_pipeline_gives_a_kinema_video(pipes, kind):
    pipe = pipes[kind]
    call, shape = CASES[kind]
    steps = []
    video = pipe(PROMPT, seed=3, steps=2, callback=lambda i, n, x: steps.append((i, n)), **call)
    assert video.frames.shape == shape and video.frames.dtype == np.uint8
    assert video.frames.std() > 0  # a picture, not a constant
    assert steps == [(1, 2), (2, 2)]
    meta = video.metadata
    assert meta["backend"] == "diffusers" and meta["model"] == f"diffusers:{kind}"
    assert meta["mode"] == ("image-to-video" if kind == "svd" else "text-to-video")
    assert meta["steps"] == 2 and meta["seed"] == 3 and meta["num_frames"] == shape[0]
    again = pipe(PROMPT, seed=3, steps=2, **call)
    assert np.array_equal(again.frames, video.frames)  # same seed, same video


def test_the_wrapper_passes_the_pipelines_own_arguments(pipes):
    """Wan: the frames are what WanPipeline makes when called directly with the same settings."""
    pipe = pipes["wan"]
    video = pipe(PROMPT, seed=5, steps=2, guidance=4.0, negative_prompt="blue square",
                 width=32, height=48, num_frames=5)  # fmt: skip
    expected = pipe.pipe(
        PROMPT, negative_prompt="blue square", height=48, width=32, num_frames=5,
        num_inference_steps=2, guidance_scale=4.0, generator=torch.Generator().manual_seed(5),
        output_type="np",
    ).frames[0]  # fmt: skip
    assert np.array_equal(video.frames, (expected.clip(0, 1) * 255).round().astype(np.uint8))
    # the scheduler's shift for one call, then back
    shifted = pipe(PROMPT, seed=5, steps=2, width=32, height=48, num_frames=5, shift=2.0)
    assert shifted.metadata["shift"] == 2.0 and not np.array_equal(shifted.frames, video.frames)
    assert pipe.pipe.scheduler.config["shift"] == 7.0


def test_formats_are_read_from_the_folders(folders):
    assert pipeline_format(folders["wan"]).unit == 16  # 8x VAE, 2x2 patches
    assert pipeline_format(folders["ltx"]).temporal == 4  # this tiny LTX VAE: 4x in time
    assert pipeline_format(folders["svd"]).image_to_video
    assert pipeline_format(folders["hunyuan"]).unit == 8  # 8x VAE, 1x1 patches


def test_what_a_diffusers_pipeline_cannot_do_is_refused(pipes):
    wan, svd = pipes["wan"], pipes["svd"]
    image = np.zeros((32, 32, 3), np.uint8)
    refusals = [
        (lambda: wan(PROMPT, width=30, height=32), "multiple of 16 (nearest: 16 or 32)"),
        (lambda: wan(PROMPT, num_frames=6), "1 + 4k"),
        (lambda: wan(PROMPT, seconds=float("inf")), "seconds must be 0 (a still image) or more"),
        (lambda: wan(PROMPT, solver="heun"), "its own scheduler"),
        (lambda: wan(PROMPT, eta=1.0), "leave eta and eta from unset"),
        (lambda: wan(PROMPT, motion=100), "no motion input"),
        (lambda: wan(PROMPT, image=image), "text-to-video"),
        (lambda: wan(PROMPT, keyframes={0.5: image}), "kinema's own models"),
        (lambda: wan(PROMPT, hierarchical=True), "kinema's own models"),
        (lambda: wan.extend(np.zeros((5, 32, 32, 3), np.uint8), PROMPT), "kinema's own models"),
        (lambda: svd(PROMPT, width=32, height=32), "give one"),
        (lambda: svd(PROMPT, cache_threshold=0.1, image=image), "no step cache"),
        (lambda: wan(PROMPT, cache_guidance_every=2), "kinema's own sampler"),
        (lambda: wan.t2v, "kinema's own models"),
    ]
    for call, needle in refusals:
        with pytest.raises(GenerationError, match=re.escape(needle)):
            call()


def test_first_block_cache_of_diffusers(pipes):
    pipe = pipes["wan"]
    video = pipe(PROMPT, steps=3, width=32, height=32, num_frames=5, cache_threshold=0.5)
    assert video.frames.shape == (5, 32, 32, 3) and video.metadata["cache_threshold"] == 0.5
    assert not pipe.pipe.transformer.is_cache_enabled  # only for that call


def test_production_and_shapesbench_run_it(pipes, folders):
    from kinema.eval.generators import ModelGenerator
    from kinema.eval.shapesbench import BenchSettings
    from kinema.production import ProductionSettings

    video = pipes["wan"].produce(PROMPT, ProductionSettings(fps=16, width=48, height=48, seconds=1),
                                 steps=1)  # fmt: skip
    assert video.frames.shape == (17, 48, 48, 3) and video.metadata["watermark"] is not None
    assert video.metadata["base_frames"] == 9 and video.metadata["backend"] == "diffusers"
    generator = ModelGenerator(f"diffusers:{folders['ltx']}", steps=1)
    frames = generator(PROMPT, 0, BenchSettings(width=32, height=32, num_frames=9))
    assert frames.shape == (9, 32, 32, 3)


def test_the_serving_worker_and_its_checks_take_it(pipes, folders, tmp_path):
    pytest.importorskip("sqlalchemy")
    from kinema.serve.config import Defaults, Limits
    from kinema.serve.errors import ApiError
    from kinema.serve.jobs import COMPLETED, JobStore
    from kinema.serve.validation import ModelInfo, job_spec
    from kinema.serve.worker import Worker

    model = f"diffusers:{folders['wan']}"
    info = ModelInfo.read(model)
    spec = job_spec({"prompt": PROMPT, "size": "32x32", "seconds": "1", "steps": 2}, info,
                    Limits(), Defaults())  # fmt: skip
    assert spec.params["num_frames"] == 9
    with pytest.raises(ApiError, match="multiple of 16"):
        job_spec({"prompt": PROMPT, "size": "40x32"}, info, Limits(), Defaults())
    # refused at the door, not in a worker: images and extension for a text-to-video pipeline,
    # no image for an image-to-video one; a long clip is one pass (no window to chain)
    png = io.BytesIO()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(png, format="PNG")
    with pytest.raises(ApiError, match="it takes no images"):
        job_spec({"prompt": PROMPT, "size": "32x32"}, info, Limits(), Defaults(), png.getvalue())
    assert (info.images_needed, info.takes_known_frames, info.takes_image_noise) == (
        0,
        False,
        False,
    )
    with pytest.raises(ApiError, match="eta .* not supported") as refused:
        job_spec({"prompt": PROMPT, "size": "32x32", "eta": 0.5}, info, Limits(), Defaults())
    assert refused.value.param == "eta"
    assert job_spec({"prompt": PROMPT, "size": "32x32", "eta": 0}, info, Limits(), Defaults())
    long = job_spec({"prompt": PROMPT, "size": "32x32", "seconds": "8"}, info, Limits(), Defaults())
    assert long.params["num_frames"] == 65
    svd = ModelInfo.read(f"diffusers:{folders['svd']}")
    assert (svd.images_needed, svd.takes_image_noise) == (1, True)
    with pytest.raises(ApiError, match="image-to-video model: it needs input_reference"):
        job_spec({"prompt": PROMPT, "size": "32x32"}, svd, Limits(), Defaults())
    made = job_spec({"prompt": PROMPT, "size": "32x32", "image_noise": 0.1}, svd, Limits(),
                    Defaults(), png.getvalue())  # fmt: skip
    assert made.inputs
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}", lease_seconds=5.0)
    try:
        job = store.create("alice", model, PROMPT, spec.params)
        assert Worker(store, tmp_path, model, pipeline=pipes["wan"]).run(max_jobs=1) == 1
        assert store.get(job.id).status == COMPLETED
    finally:
        store.close()


def test_cli_generates_with_a_diffusers_pipeline(folders, tmp_path):
    """In process (the subprocess tests elsewhere pay diffusers' import time again)."""
    from typer.testing import CliRunner

    from kinema.cli import UsageError, app
    from kinema.io.images import save_png
    from kinema.io.video import read_video

    out, image = (
        tmp_path / "clip.mp4",
        save_png(tmp_path / "last.png", np.zeros((32, 32, 3), np.uint8)),
    )
    model = f"diffusers:{folders['cogvideox']}"
    common = ["--model", model, "--steps", "2", "--size", "32x32", "--seconds", "1", "--no-c2pa",
              "--also", "", "-o", str(out)]  # fmt: skip
    result = CliRunner().invoke(app, ["generate", PROMPT, *common])
    assert result.exit_code == 0, result.output
    frames, fps, meta = read_video(out)
    assert frames.shape == (9, 32, 32, 3) and fps == 8 and "diffusers" in meta["model"]
    refused = CliRunner().invoke(app, ["generate", PROMPT, *common, "--last-image", str(image)])
    assert isinstance(refused.exception, GenerationError)
    assert "kinema's own models" in str(refused.exception)
    plan = CliRunner().invoke(app, ["plan", "--model", model])
    assert isinstance(plan.exception, UsageError) and "own models" in str(plan.exception)
