"""Invariants of the Shapes world: specs, renderer, captions, parser, placement, data set."""

import dataclasses
import random

import numpy as np
import pytest

from kinema.world import (
    ObjectSpec,
    Scene,
    WorldError,
    canonical_caption,
    caption,
    parse_caption,
    place,
    random_scene,
    render,
    vocab,
)
from kinema.world.dataset import Bucket, ShapesDataset
from kinema.world.motion import margins, object_track, scene_tracks
from kinema.world.render import frame_times


def scene_a():
    return Scene(
        (
            ObjectSpec("circle", "red", "large", "right", "fast", (0.2, 0.3)),
            ObjectSpec("triangle", "yellow", "medium", "bouncing", "slow", (0.7, 0.2)),
        ),
        background="checkered",
        occluder=True,
        camera="pan-left",
    )


def test_render_is_deterministic_and_shaped():
    a = render(scene_a(), 48, 32, 9, 8.0)
    b = render(scene_a(), 48, 32, 9, 8.0)
    assert a.shape == (9, 32, 48, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a[0], a[-1])  # things move


def test_higher_fps_gives_true_in_between_frames():
    base = render(scene_a(), 64, 64, 9, 8.0)
    fine = render(scene_a(), 64, 64, 17, 16.0)
    assert np.array_equal(fine[::2], base)
    # the in-between frame is a new picture, not a copy of a neighbour
    assert not np.array_equal(fine[1], fine[0]) and not np.array_equal(fine[1], fine[2])


def test_higher_resolution_is_the_same_scene():
    small = render(scene_a(), 32, 32, 5, 8.0).astype(np.float32)
    large = render(scene_a(), 128, 128, 5, 8.0).astype(np.float32)
    pooled = large.reshape(5, 32, 4, 32, 4, 3).mean(axis=(2, 4))
    assert np.abs(pooled - small).mean() < 3.0  # anti-aliasing makes both area averages


def test_edges_are_anti_aliased():
    frame = render(Scene((ObjectSpec("circle", "white", "large"),)), 64, 64, 1)[0, :, :, 0]
    values = set(np.unique(frame).tolist())
    assert len(values - {0, 240}) >= 4  # partial coverage along the rim


def test_non_square_keeps_circles_round():
    frame = render(Scene((ObjectSpec("circle", "white", "large"),)), 96, 48, 1)[0, :, :, 0] > 120
    ys, xs = np.nonzero(frame)
    assert abs(np.ptp(xs) - np.ptp(ys)) <= 1


def test_tracks_stay_in_frame_and_bounce_on_floor():
    obj = ObjectSpec("circle", "red", "medium", "bouncing", "slow", (0.3, 0.2))
    tracks = scene_tracks(Scene((obj,)), np.linspace(0, 4, 200), 64, 64)[0]
    assert tracks[:, 1].max() <= 1 - 0.105 + 1e-9  # never below the floor
    ys = tracks[:, 1]
    assert ((np.diff(np.sign(np.diff(ys))) < 0).sum()) >= 2  # comes back up at least twice


@pytest.mark.parametrize(
    "bad",
    [
        dict(shape="hexagon", color="red"),
        dict(shape="circle", color="pink"),
        dict(shape="circle", color="red", motion="spinning"),
        dict(shape="circle", color="red", start=(1.5, 0.5)),
    ],
)
def test_bad_object_specs_name_the_problem(bad):
    with pytest.raises(WorldError, match="unknown|outside"):
        ObjectSpec(**bad)


def test_bad_scenes_and_render_requests():
    with pytest.raises(WorldError, match="1 to 3 objects"):
        Scene(tuple(ObjectSpec("circle", "red") for _ in range(4)))
    with pytest.raises(WorldError, match="background"):
        Scene((ObjectSpec("circle", "red"),), background="plaid")
    with pytest.raises(WorldError, match="frame size"):
        render(scene_a(), 4, 4, 5)
    with pytest.raises(WorldError, match="num_frames"):
        render(scene_a(), 32, 32, 0)
    with pytest.raises(WorldError, match="fps"):
        render(scene_a(), 32, 32, 5, fps=0)


def test_scene_json_round_trip():
    s = scene_a()
    assert Scene.from_dict(s.to_dict()) == s


def _unplaced(scene):
    objects = tuple(dataclasses.replace(o, start=(0.5, 0.5)) for o in scene.objects)
    return dataclasses.replace(scene, objects=objects)


def test_every_generated_caption_parses_back_to_its_scene():
    rng, words = np.random.default_rng(0), random.Random(0)
    texts = set()
    for _ in range(400):
        scene = random_scene(rng)
        for text in (canonical_caption(scene), caption(scene, words)):
            assert parse_caption(text) == _unplaced(scene), text
            texts.add(text)
    assert len(texts) > 700  # paraphrases, not one template


def test_direction_pairs_mirror_the_movers_and_swap_only_the_direction_words():
    from kinema.world.pairs import OPPOSITE, caption_pair, mirrored

    rng, words = np.random.default_rng(1), random.Random(1)
    times = np.linspace(0.0, 2.0, 9)
    pairs = 0
    for _ in range(300):
        scene = random_scene(rng)
        text, mirror_text = caption_pair(scene, words)
        mirror = mirrored(scene)
        assert parse_caption(text) == _unplaced(scene), text
        if mirror is None:
            assert mirror_text is None
            assert not any(o.motion in OPPOSITE for o in scene.objects)
            continue
        pairs += 1
        assert parse_caption(mirror_text) == _unplaced(mirror), mirror_text
        # the same sentence: every changed word is a direction word
        changed = {(a, b) for a, b in zip(text.split(), mirror_text.split(), strict=True) if a != b}
        assert changed and all(a.strip(",").removeprefix("left").removeprefix("right") in
                               ("", "ward", "wards", "s") or a.startswith(("up", "down"))
                               for a, _ in changed), changed  # fmt: skip
        # and the mirrored objects cover the mirrored path (in the world; a camera pan stays)
        for o, m in zip(scene.objects, mirror.objects, strict=True):
            track, flipped = object_track(o, times, 64, 64), object_track(m, times, 64, 64)
            axis = {"left": 0, "right": 0, "up": 1, "down": 1}.get(o.motion)
            if axis is None:
                assert m == o
            else:
                assert m.motion == OPPOSITE[o.motion]
                lo, hi = margins(o, vocab.SIZES[o.size], 64, 64)[2 * axis : 2 * axis + 2]
                np.testing.assert_allclose(flipped[:, axis], lo + hi - track[:, axis], atol=1e-9)
    assert pairs > 100


def test_canonical_caption_reads_plainly():
    s = Scene((ObjectSpec("circle", "red", motion="left"),), background="black")
    assert canonical_caption(s) == "a red circle moving left on a black background"
    two = Scene((ObjectSpec("square", "blue", "small"),) * 2, background="gray")
    assert canonical_caption(two) == "two small blue squares standing still on a gray background"


def test_parser_understands_paraphrases():
    s = parse_caption("A crimson ball drifting leftward over a black backdrop")
    assert s.objects[0].color == "red" and s.objects[0].shape == "circle"
    assert s.objects[0].motion == "left" and s.background == "black"
    s = parse_caption("on a navy blue backdrop, two tiny lemon wedges bounce up and down rapidly")
    assert len(s.objects) == 2 and s.objects[0] == s.objects[1]
    assert (s.objects[0].color, s.objects[0].size, s.objects[0].motion, s.objects[0].speed) == (
        "yellow", "small", "bouncing", "fast",
    )  # fmt: skip
    assert s.background == "navy"


@pytest.mark.parametrize(
    "text, message",
    [
        ("a zebra moving left", "unknown word 'zebra'.*circle"),
        ("", "empty caption"),
        ("a circle moving left", "needs a colour"),
        ("a gray circle", "background colour, not an object colour"),
        ("a red", "does not describe any shape"),
        ("three red circles and a blue square", "at most 3"),
        ("a red circle moving", "no direction"),
        ("a red circle moving left and right", "two motions"),
        ("a red circle on a black background on a gray background", "two backgrounds"),
        ("a red circle; rm -rf /", "unexpected characters"),
    ],
)
def test_parser_errors_are_clear(text, message):
    with pytest.raises(WorldError, match=message):
        parse_caption(text)


def test_placement_is_reproducible_and_keeps_objects_apart():
    described = parse_caption("a large red circle moving right and a large blue square moving left")
    a = place(described, np.random.default_rng(3))
    b = place(described, np.random.default_rng(3))
    assert a == b
    tracks = scene_tracks(a, np.linspace(0, 2, 30), 64, 64)
    gap = np.hypot(*(tracks[0, :, :2] - tracks[1, :, :2]).T)
    assert gap.min() > 0.3  # two large shapes never touch


def test_placement_with_pillar_crosses_it():
    described = parse_caption(
        "a small red circle moving right quickly on a black background with a pillar"
    )
    for seed in range(5):
        x = scene_tracks(place(described, np.random.default_rng(seed)), frame_times(17, 8), 64, 64)[
            0, :, 0
        ]
        assert x[0] < 0.5 < x[-1]


def test_crowded_placement_fails_clearly_when_strict():
    crowded = parse_caption("three large white circles growing quickly")
    with pytest.raises(WorldError, match="cannot place"):
        place(crowded, np.random.default_rng(0), width=16, height=16, tries=20)
    assert (
        len(
            place(
                crowded, np.random.default_rng(0), width=16, height=16, tries=20, strict=False
            ).objects
        )
        == 3
    )


def test_dataset_streams_reproducible_bucketed_batches():
    buckets = [Bucket(32, 32, 1), Bucket(48, 32, 9)]
    a = iter(ShapesDataset(buckets, batch_size=3, seed=7))
    b = iter(ShapesDataset(buckets, batch_size=3, seed=7))
    other_rank = iter(ShapesDataset(buckets, batch_size=3, seed=7, rank=1, world_size=2))
    shapes = set()
    for _ in range(6):
        x, y, z = next(a), next(b), next(other_rank)
        assert x.captions == y.captions and torch_equal(x.video, y.video)
        assert x.captions != z.captions
        assert x.video.min() >= -1 and x.video.max() <= 1 and len(x.captions) == 3
        shapes.add(tuple(x.video.shape))
    assert shapes <= {(3, 3, 1, 32, 32), (3, 3, 9, 32, 48)} and len(shapes) == 2


def torch_equal(a, b):
    return bool((a == b).all())


def test_dataset_rejects_bad_buckets():
    with pytest.raises(WorldError):
        Bucket(32, 32, 0)
    with pytest.raises(WorldError, match="weights"):
        ShapesDataset([Bucket(32, 32, 1)], 2, weights=[1, 2])
