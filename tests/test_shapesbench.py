"""ShapesBench: the suite, the scoring, and that the metrics tell good video from bad."""

import numpy as np
import pytest

from kinema.eval.generators import folder_clips, get_generator, groundtruth, independent_frames
from kinema.eval.report import write_report
from kinema.eval.shapesbench import (
    BenchSettings,
    clip_identity_breaks,
    load_suite,
    run_bench,
    score_clip,
    summarize,
)
from kinema.io.video import write_video
from kinema.world.spec import WorldError


def test_suite_is_valid_and_covers_every_dimension():
    suite = load_suite()
    assert len(suite) >= 40 and len({p.id for p in suite}) == len(suite)
    for p in suite:
        p.scene  # every prompt parses  # noqa: B018
    covered = {d for p in suite for d in p.dimensions}
    for dim in (
        "color",
        "shape",
        "direction",
        "count",
        "size",
        "background",
        "permanence",
        "bounce",
    ):
        assert dim in covered
    quick = load_suite(quick=True)
    assert 8 <= len(quick) < len(suite)


@pytest.fixture(scope="module")
def reference_runs():
    suite = load_suite(quick=True)
    return {
        "groundtruth": run_bench(groundtruth, suite, seeds=[0]),
        "independent-frames": run_bench(independent_frames, suite, seeds=[0]),
    }


def test_groundtruth_is_the_ceiling(reference_runs):
    summary = summarize(reference_runs["groundtruth"])
    for dim in (
        "color",
        "shape",
        "size",
        "direction",
        "count",
        "background",
        "identity",
        "permanence",
        "bounce",
    ):
        assert summary[dim] >= 0.95, (dim, summary)


def test_metrics_catch_independent_frames(reference_runs):
    good = summarize(reference_runs["groundtruth"])
    bad = summarize(reference_runs["independent-frames"])
    assert bad["identity"] < 0.5 * good["identity"]
    assert bad["permanence"] < good["permanence"]
    assert bad["flicker"] > 3 * good["flicker"]
    assert bad["warping_error"] > 10 * good["warping_error"]
    # each frame alone still matches the caption
    assert bad["color"] >= 0.9 and bad["shape"] >= 0.9


def test_shuffling_frames_worsens_identity_and_warping():
    settings = BenchSettings()
    prompt = "a green square moving right quickly on a gray background"
    frames = groundtruth(prompt, 0, settings)
    shuffled = frames[np.random.default_rng(0).permutation(len(frames))]
    a, b = score_clip(frames, prompt, settings.fps), score_clip(shuffled, prompt, settings.fps)
    assert b["identity"] < a["identity"]
    assert b["warping_error"] > a["warping_error"]


def test_identity_breaks_name_the_transition_and_the_reason():
    prompt = "a red circle standing still on a black background"
    frames = groundtruth(prompt, 0, BenchSettings())
    assert clip_identity_breaks(frames, prompt, 8.0) == []
    gap = frames.copy()
    gap[6] = gap[0, 0, 0]  # the object vanishes for one frame: background only
    assert clip_identity_breaks(gap, prompt, 8.0) == [(6, "gone"), (7, "new")]
    n = len(frames)
    assert score_clip(gap, prompt, 8.0)["identity"] == pytest.approx(1 - 2 / (n - 1))


def test_static_video_has_no_flicker():
    prompt = "a red circle standing still on a black background"
    frames = groundtruth(prompt, 0, BenchSettings())
    assert score_clip(frames, prompt, 8.0)["flicker"] == 0.0


def test_wrong_video_scores_low():
    settings = BenchSettings()
    frames = groundtruth("a blue square moving left on a gray background", 0, settings)
    scores = score_clip(frames, "a red circle moving right on a black background", settings.fps)
    assert scores["color"] == 0 and scores["shape"] == 0 and scores["background"] == 0


def test_report_and_folder_mode(tmp_path, reference_runs):
    settings = BenchSettings()
    prompt = "a yellow triangle moving up on a navy background"
    frames = groundtruth(prompt, 0, settings)
    (tmp_path / "vids").mkdir()
    write_video(tmp_path / "vids" / "a.mp4", frames, 8.0, metadata={"prompt": prompt})
    ((name, read_prompt, read_frames, fps),) = folder_clips(tmp_path / "vids")
    assert read_prompt == prompt and fps == 8.0 and read_frames.shape == frames.shape
    assert score_clip(read_frames, prompt, fps)["direction"] == 1.0
    summaries = write_report(
        tmp_path / "rep", reference_runs, {"groundtruth": [(prompt, frames)]}, settings
    )
    assert set(summaries) == {"groundtruth", "independent-frames"}
    for f in ("results.json", "report.md", "report.html", "scores.png", "contact_groundtruth.png"):
        assert (tmp_path / "rep" / f).stat().st_size > 0
    # a model folder given as a generator is a path: its sheet is named after the folder
    write_report(tmp_path / "rep2", reference_runs, {"runs/my-model": [(prompt, frames)]}, settings)
    assert (tmp_path / "rep2" / "contact_my-model.png").stat().st_size > 0


def test_unknown_generator_and_bad_folder():
    with pytest.raises(KeyError, match="groundtruth"):
        get_generator("sora")
    with pytest.raises(FileNotFoundError):
        folder_clips("/nonexistent-folder")
    with pytest.raises(WorldError):
        score_clip(np.zeros((3, 32, 32, 3), np.uint8), "a zebra", 8.0)
