"""The detector reads rendered scenes back: accuracy on renders, after H.264, and its pieces."""

import numpy as np
import pytest

from kinema.eval.detector_accuracy import measure_accuracy
from kinema.io.video import h264_round_trip
from kinema.world import ObjectSpec, Scene, detect, parse_caption, place, render


def test_accuracy_on_random_renders_at_64():
    report = measure_accuracy(n=60, size=64, seed=1000)
    assert report["overall"] >= 0.99, report


def test_accuracy_on_random_renders_at_128_non_default_fps():
    report = measure_accuracy(n=12, size=128, num_frames=13, fps=6.0, seed=2000)
    assert report["overall"] >= 0.98, report


def test_accuracy_after_h264():
    report = measure_accuracy(n=30, size=64, h264=True, seed=3000)
    assert report["overall"] >= 0.97, report


def test_reads_every_attribute_of_a_known_scene():
    scene = Scene(
        (
            ObjectSpec("triangle", "purple", "large", "left", "fast", (0.75, 0.3)),
            ObjectSpec("square", "cyan", "small", "still", "slow", (0.2, 0.8)),
        ),
        background="gradient",
    )
    found = detect(render(scene, 64, 64, 17, 8.0), 8.0)
    assert found.background == "gradient" and not found.occluder and found.count == 2
    by_color = {t.color: t for t in found.tracks}
    purple, cyan = by_color["purple"], by_color["cyan"]
    assert (purple.shape, purple.size, purple.motion, purple.speed) == (
        "triangle",
        "large",
        "left",
        "fast",
    )
    assert (cyan.shape, cyan.size, cyan.motion) == ("square", "small", "still")


def test_box_fill_is_one_for_squares_and_pi_over_four_for_circles():
    import math

    for shape, expected in (("square", 1.0), ("circle", math.pi / 4)):
        scene = Scene((ObjectSpec(shape, "red", "large", "still", "slow", (0.5, 0.5)),), "black")
        (track,) = detect(render(scene, 64, 64, 5, 8.0), 8.0).tracks
        fills = [b.fill for b in track.blobs]
        assert fills == pytest.approx([expected] * len(fills), abs=0.03), shape


def test_bounce_fits_a_parabola_and_a_line_does_not():
    bouncing = place(parse_caption("a blue circle bouncing"), np.random.default_rng(0))
    track = detect(render(bouncing, 64, 64, 17, 8.0), 8.0).tracks[0]
    assert track.motion == "bouncing" and track.bounce_r2 > 0.95
    falling = place(parse_caption("a blue circle moving down"), np.random.default_rng(0))
    track = detect(render(falling, 64, 64, 17, 8.0), 8.0).tracks[0]
    assert track.motion == "down" and track.bounce_r2 is None


def test_object_behind_pillar_is_one_track_with_a_gap():
    scene = place(
        parse_caption("a medium green circle moving left quickly with a pillar"),
        np.random.default_rng(1),
    )
    found = detect(render(scene, 64, 64, 17, 8.0), 8.0)
    assert found.occluder and found.count == 1
    assert found.tracks[0].motion == "left"


def test_empty_frames_have_no_objects_and_bad_input_is_refused():
    found = detect(np.zeros((5, 32, 32, 3), np.uint8), 8.0)
    assert found.count == 0 and found.background == "black"
    with pytest.raises(ValueError, match="uint8"):
        detect(np.zeros((5, 32, 32, 3), np.float32), 8.0)


def test_shuffled_frames_break_motion_reading():
    scene = place(parse_caption("a red square moving right quickly"), np.random.default_rng(2))
    frames = render(scene, 64, 64, 17, 8.0)
    shuffled = frames[np.random.default_rng(0).permutation(17)]
    assert detect(frames, 8.0).tracks[0].motion == "right"
    assert detect(h264_round_trip(frames, fps=8), 8.0).tracks[0].motion == "right"
    tracks = detect(shuffled, 8.0).tracks
    assert len(tracks) != 1 or tracks[0].motion != "right" or tracks[0].speed != "fast"
