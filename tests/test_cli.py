"""The `kinema` command line, run in a subprocess so exit codes and stderr are the real ones."""

from __future__ import annotations

import json

import numpy as np
import pytest
from cli_helpers import assert_user_error, run_kinema
from PIL import Image

from kinema.io.video import read_video
from kinema.world.detect import detect

RED_LEFT = "a red circle moving left on a black background"


# ----------------------------------------------------------------------------- world render


def test_render_writes_the_described_clip(tmp_path):
    result = run_kinema(
        "world", "render", RED_LEFT, "-o", "clip.mp4", "--size", "48x32", "--seconds", "1",
        "--fps", "8", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    path = tmp_path / "clip.mp4"
    assert path.is_file()

    frames, fps, metadata = read_video(path)
    assert frames.shape == (9, 32, 48, 3)
    assert frames.dtype == np.uint8
    assert fps == pytest.approx(8)
    assert metadata["prompt"] == RED_LEFT
    assert json.loads(metadata["scene"])["objects"][0]["color"] == "red"

    found = detect(frames, fps)
    assert found.background == "black"
    assert len(found.tracks) == 1
    (track,) = found.tracks
    assert (track.color, track.shape, track.motion) == ("red", "circle", "left")


def test_render_unknown_word_is_one_line_and_writes_nothing(tmp_path):
    result = run_kinema("world", "render", "a zebra moving left", "-o", "z.mp4", cwd=tmp_path)
    assert_user_error(result, "unknown word 'zebra'", "circle")
    assert not (tmp_path / "z.mp4").exists()
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind either


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["a red circle", "--size", "64"], ["WIDTHxHEIGHT", "'64'"]),
        (["a gray circle"], ["'gray'", "background colour"]),
        (["a red circle", "--size", "4x4"], ["4x4"]),
        (["a red circle", "-o", "missing/clip.mp4"], ["missing"]),
        (["a red circle", "--seconds", "inf"], ["--seconds", "inf"]),
        (["a red circle", "--seconds", "1e9"], ["more than half this machine's memory"]),
    ],
    ids=["size-no-x", "background-colour-object", "tiny-size", "missing-dir", "endless",
         "over-memory"],
)  # fmt: skip
def test_render_bad_input_exits_2(tmp_path, args, needles):
    result = run_kinema("world", "render", *args, cwd=tmp_path)
    assert_user_error(result, *needles)
    assert list(tmp_path.rglob("*.*")) == []


def test_render_zero_size_exits_2(tmp_path):
    result = run_kinema(
        "world", "render", "a red circle", "--size", "0x0", "-o", "c.mp4", cwd=tmp_path
    )
    assert_user_error(result, "0x0")


def test_render_negative_seconds_exits_2(tmp_path):
    result = run_kinema(
        "world", "render", "a red circle", "--seconds", "-1", "-o", "c.mp4", cwd=tmp_path
    )
    assert_user_error(result, "--seconds")


@pytest.mark.parametrize(
    "args",
    [["world", "render"], ["bench", "shapes", "--seeds", "abc"]],
    ids=["missing-argument", "bad-int"],
)
def test_click_usage_errors_exit_2_without_traceback(tmp_path, args):
    result = run_kinema(*args, cwd=tmp_path)
    assert result.returncode == 2, (result.returncode, result.stderr[-500:])
    assert "Traceback" not in result.stderr


# ----------------------------------------------------------------------------- world sample


def test_sample_writes_clips_captions_and_sheet_deterministically(tmp_path):
    args = ("world", "sample", "--n", "2", "--size", "32x32", "--frames", "5")
    first = run_kinema(*args, "-o", "out", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    out = tmp_path / "out"
    mp4s = sorted(p.name for p in out.glob("*.mp4"))
    assert len(mp4s) == 2

    prompts = json.loads((out / "prompts.json").read_text())
    assert sorted(prompts) == mp4s
    assert all(isinstance(v, str) and v for v in prompts.values())
    lines = (out / "captions.txt").read_text().splitlines()
    assert lines == [f"{k}\t{v}" for k, v in prompts.items()]

    with Image.open(out / "contact_sheet.png") as sheet:
        assert sheet.format == "PNG"
        sheet.load()
        assert sheet.width > 32 and sheet.height > 32

    frames, fps, metadata = read_video(out / mp4s[0])
    assert frames.shape == (5, 32, 32, 3)
    assert fps == pytest.approx(8)
    assert metadata["prompt"] == prompts[mp4s[0]]

    second = run_kinema(*args, "-o", "again", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert json.loads((tmp_path / "again" / "prompts.json").read_text()) == prompts
    again, _, _ = read_video(tmp_path / "again" / mp4s[0])
    np.testing.assert_array_equal(again, frames)


def test_sample_bad_count_exits_2(tmp_path):
    assert_user_error(run_kinema("world", "sample", "--n", "0", "-o", "s", cwd=tmp_path), "--n")
    assert not (tmp_path / "s").exists()


def test_vocab_lists_synonyms(tmp_path):
    result = run_kinema("world", "vocab", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for word in ("crimson", "checkered", "circle", "pillar"):
        assert word in result.stdout, word


# ----------------------------------------------------------------------------- bench shapes


def test_bench_quick_separates_reference_generators(tmp_path):
    result = run_kinema("bench", "shapes", "--quick", "-o", "rep", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rep = tmp_path / "rep"
    results = json.loads((rep / "results.json").read_text())
    summaries = results["summaries"]
    assert set(summaries) == {"groundtruth", "independent-frames"}
    assert summaries["groundtruth"]["identity"] >= 0.95
    assert summaries["independent-frames"]["identity"] < 0.5
    assert len(results["clips"]["groundtruth"]) == 15
    for name in ("report.html", "report.md", "scores.png"):
        assert (rep / name).is_file(), name
        assert (rep / name).stat().st_size > 0, name
    assert "ShapesBench" in result.stdout


def test_bench_first_seed_runs_later_seeds(tmp_path):
    args = ("--quick", "--generator", "groundtruth", "--seeds", "2")
    result = run_kinema("bench", "shapes", *args, "--first-seed", "5", "-o", "rep", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    clips = json.loads((tmp_path / "rep" / "results.json").read_text())["clips"]["groundtruth"]
    assert sorted({c["seed"] for c in clips}) == [5, 6]
    assert len(clips) == 30  # 15 quick prompts x 2 seeds
    # the contact sheet's examples come from the first seed run (none at all if it were seed 0)
    assert (tmp_path / "rep" / "contact_groundtruth.png").is_file()


def test_bench_judges_a_folder_of_videos(tmp_path):
    sample = run_kinema(
        "world", "sample", "--n", "3", "-o", "vids", "--size", "64x64", "--frames", "17",
        cwd=tmp_path,
    )  # fmt: skip
    assert sample.returncode == 0, sample.stderr
    result = run_kinema("bench", "shapes", "--videos", "vids", "-o", "rep2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    results = json.loads((tmp_path / "rep2" / "results.json").read_text())
    assert set(results["summaries"]) == {"videos"}  # no generator runs unless asked for
    clips = results["clips"]["videos"]
    assert len(clips) == 3
    prompts = json.loads((tmp_path / "vids" / "prompts.json").read_text())
    assert sorted(c["prompt"] for c in clips) == sorted(prompts.values())
    # ground-truth renders of their own captions
    from kinema.eval.shapesbench import ACCURACY_DIMENSIONS

    for clip in clips:
        for dim in ACCURACY_DIMENSIONS:  # camera pans included: read relative to the world
            assert clip["scores"].get(dim, 1.0) == 1.0, (clip["prompt"], dim, clip["scores"])
    assert results["summaries"]["videos"]["color"] == 1.0


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--videos", "does-not-exist"], ["does-not-exist"]),
        (["--seeds", "0"], ["--seeds"]),
        (["--first-seed", "-1"], ["--first-seed"]),
        (["--generator", "no-such-generator"], ["no-such-generator"]),
    ],
    ids=["missing-folder", "zero-seeds", "negative-first-seed", "unknown-generator"],
)
def test_bench_bad_input_exits_2(tmp_path, args, needles):
    result = run_kinema("bench", "shapes", *args, "-o", "rep", cwd=tmp_path)
    assert_user_error(result, *needles)
    assert not (tmp_path / "rep").exists()
