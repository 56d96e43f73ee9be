"""The production pipeline end to end through the Python API: a fake model that renders the
Shapes world (fast, and its frames are the ground truth), then the real kinema-tiny once."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import kinema
from kinema.api import Video
from kinema.io.video import read_video
from kinema.pipeline.text_to_video import GenerationError
from kinema.production import (
    ExportSettings,
    ProductionSettings,
    PromptRefused,
    SafetyError,
    Stages,
    base_format,
    export,
    produce,
    verify,
)
from kinema.production.interpolate import BlendInterpolator
from kinema.production.produce import build_stages
from kinema.world import parse_caption, place, render


class WorldPipe:
    """Stands in for kinema.api.Pipeline: renders the prompt's scene at the requested format."""

    def __init__(self):
        self.calls = []

    def __call__(self, prompt, seed=0, seconds=2.0, fps=8.0, width=64, height=64,
                 negative_prompt="", callback=None, **kw):  # fmt: skip
        self.calls.append(dict(prompt=prompt, fps=fps, width=width, height=height,
                               negative_prompt=negative_prompt, **kw))  # fmt: skip
        frames = 1 + 4 * round(seconds * fps / 4)
        scene = place(parse_caption(prompt), np.random.default_rng(seed), seconds, width, height)
        meta = {"prompt": prompt, "model": "world", "seed": seed, "fps": fps, "width": width,
                "height": height, "num_frames": frames, "mode": "text-to-video", "timings": {}}  # fmt: skip
        return Video(render(scene, width, height, frames, fps), fps, meta)


def test_base_format():
    assert base_format(ProductionSettings(fps=24, width=256, height=256)) == (8, 64, 64)
    assert base_format(ProductionSettings(fps=4, width=32, height=48)) == (4, 32, 48)
    assert base_format(ProductionSettings(fps=30, width=256, height=144)) == (8, 80, 48)
    assert base_format(ProductionSettings(fps=8, width=96, height=64)) == (8, 96, 64)  # native
    with pytest.raises(ValueError, match="fps must be"):
        ProductionSettings(fps=0).check()


def test_output_too_large_for_memory_is_refused_before_generating():
    pipe = WorldPipe()
    # a 64x64 8 fps base clip of 10 minutes is small; upsampled to 2048x2048 at 60 fps it is not
    huge = ProductionSettings(fps=60, width=2048, height=2048, seconds=600)
    with pytest.raises(
        GenerationError, match=r"the output's 36001 frames .* ask for at most \d+ s"
    ):
        produce(pipe, "a green triangle", huge)
    assert pipe.calls == []
    for seconds in (float("inf"), float("nan"), -1.0):
        with pytest.raises(GenerationError, match="seconds must be 0"):
            ProductionSettings(seconds=seconds).check()


def test_produce_and_export_a_24fps_256px_clip(home, tmp_path):
    pipe = WorldPipe()
    s = ProductionSettings(
        fps=24, width=256, height=256, seed=3, generation_id="c0ffee00" + "1" * 24
    )
    video = produce(pipe, "a green triangle", s, steps=5)
    (call,) = pipe.calls
    assert (call["fps"], call["width"], call["height"], call["steps"]) == (8, 64, 64, 5)
    assert call["negative_prompt"] == "" and call["prompt"] != "a green triangle"  # expanded
    m = video.metadata
    assert video.frames.shape == (49, 256, 256, 3) and video.fps == 24
    assert m["prompt"] == "a green triangle" and m["expanded_prompt"] == call["prompt"]
    assert (m["base_fps"], m["base_width"], m["base_frames"]) == (8, 64, 17)
    assert m["production"] == {
        "interpolator": "learned",
        "upscaler": "learned",
        "policy": "default",
    }
    assert m["watermark"]["payload_hex"] == "c0ffee00" and m["safety"]["frames_checked"] == 49
    assert m["quality"]["adherence"]["color"] == 1.0  # the fake model renders the truth
    assert {"generate", "interpolate", "upscale", "safety", "watermark", "quality"} <= set(
        m["timings"]
    )

    files = export(
        video,
        tmp_path / "clip.mp4",
        ExportSettings(formats=("thumbnail", "spritesheet", "report", "gif", "webm")),
    )
    assert {p.name for p in files.values()} == {"clip.mp4", "clip.thumbnail.png", "clip.spritesheet.png",
                                                "clip.quality.json", "clip.gif", "clip.webm"}  # fmt: skip
    frames, fps, tags = read_video(files["mp4"])
    assert frames.shape == (49, 256, 256, 3) and fps == 24 and tags["prompt"] == "a green triangle"
    assert json.loads(tags["quality"]) == m["quality"]
    assert json.loads(files["report"].read_text())["quality"] == m["quality"]
    assert read_video(files["webm"])[0].shape == (49, 256, 256, 3)
    result = verify(files["mp4"], home / "c2pa-dev" / "root.pem")
    assert result.ok and result.watermark.payload_hex == "c0ffee00" and result.provenance.trusted
    assert result.provenance.generation["expanded_prompt"] == m["expanded_prompt"]
    assert not verify(files["webm"]).ok  # no manifest in WebM, the watermark still reads
    assert verify(files["webm"]).watermark.payload_hex == "c0ffee00"


def test_refused_prompt_generates_nothing(home):
    pipe = WorldPipe()
    with pytest.raises(PromptRefused, match="'self-harm'"):
        produce(pipe, "a red circle about suicide", ProductionSettings())
    assert pipe.calls == []


def test_a_flagged_frame_fails_the_job_and_nothing_is_exported(home, tmp_path):
    class FlagMiddle:
        name = "fake"

        def __init__(self):
            self.count = 0

        def __call__(self, frame):
            self.count += 1
            return "unsafe content" if self.count == 25 else None

    stages = Stages(frame_classifiers=[FlagMiddle()])
    with pytest.raises(
        SafetyError, match="frame 24 flagged by safety classifier 'fake': unsafe content"
    ):
        video = produce(WorldPipe(), "a red circle moving left", ProductionSettings(fps=24), stages)
        export(video, tmp_path / "clip.mp4")
    assert not (tmp_path / "clip.mp4").exists() and not list(tmp_path.glob("clip*"))


def test_stages_plug_in_and_are_recorded(home):
    class Learned:
        name = "learned-upscaler-v0"

        def __call__(self, frames, width, height):
            return np.repeat(
                np.repeat(frames, height // frames.shape[1], 1), width // frames.shape[2], 2
            )

    stages = Stages(interpolator=BlendInterpolator(), upscaler=Learned())
    s = ProductionSettings(fps=16, width=128, height=128, expand=False, watermark=False)
    video = produce(WorldPipe(), "a red circle moving left on a black background", s, stages)
    assert video.metadata["production"]["interpolator"] == "blend"
    assert video.metadata["production"]["upscaler"] == "learned-upscaler-v0"
    assert video.metadata["expanded_prompt"] is None and video.metadata["watermark"] is None
    with pytest.raises(
        ValueError, match="unknown interpolator 'rife': use one of learned, flow, blend"
    ):
        build_stages(interpolator="rife")


def test_the_real_model_through_pipeline_produce(home):
    torch.set_num_threads(1)
    pipe = kinema.load()
    video = pipe.produce("a red circle moving left on a black background", ProductionSettings(fps=16, seconds=1),
                         steps=1)  # fmt: skip
    assert video.frames.shape == (17, 64, 64, 3) and video.metadata["model"] == "kinema-tiny"
    assert video.metadata["production"]["interpolator"] == "learned"
    assert video.metadata["watermark"]["votes_per_bit"] == 17
