"""Multi-shot generation: shot lists (YAML, JSON) and their errors, the bible, the planner, and
shots cut together by the shipped tiny model (2 steps, 1-second shots, so fast)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import assert_user_error, run_kinema

import kinema
from kinema.io.video import read_video
from kinema.pipeline.shots import (
    SceneBible,
    Shot,
    ShotList,
    ShotListError,
    generate_shots,
    load_shot_list,
    plan_shots,
    shot_clips,
    shot_prompt,
)
from kinema.world.parse import parse_caption

EXAMPLE = Path(__file__).parents[1] / "examples" / "shots" / "two_shots.yaml"

YAML = """\
bible:
  characters:
    hero: a small red circle
  setting: on a navy background
fps: 8
size: 64x64
shots:
  - name: opening
    prompt: the hero moving left
    seconds: 1
  - prompt: the hero moving up
    seconds: 0.5
    seed: 4
"""
AS_JSON = {
    "bible": {"characters": {"hero": "a small red circle"}, "setting": "on a navy background"},
    "fps": 8,
    "size": [64, 64],
    "shots": [
        {"name": "opening", "prompt": "the hero moving left", "seconds": 1},
        {"prompt": "the hero moving up", "seconds": 0.5, "seed": 4},
    ],
}


@pytest.fixture(scope="module")
def pipe():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # like the CLI tests (OMP_NUM_THREADS=1): 2 threads on a busy 2-core
    yield kinema.load()  # machine are many times slower
    torch.set_num_threads(threads)


def test_yaml_and_json_give_the_same_shot_list(tmp_path):
    (tmp_path / "s.yaml").write_text(YAML)
    (tmp_path / "s.json").write_text(json.dumps(AS_JSON, indent=2))
    from_yaml, from_json = load_shot_list(tmp_path / "s.yaml"), load_shot_list(tmp_path / "s.json")
    assert from_yaml == from_json
    assert from_yaml == ShotList(
        SceneBible({"hero": "a small red circle"}, "on a navy background"),
        (
            Shot("the hero moving left", 1.0, None, "opening"),
            Shot("the hero moving up", 0.5, 4, "shot2"),
        ),
        8.0,
        (64, 64),
    )
    example = load_shot_list(EXAMPLE)
    for shot in example.shots:  # the example speaks the Shapes grammar once composed
        parse_caption(shot_prompt(example.bible, shot))


HEAD = "bible:\n  characters:\n    hero: a small red circle\nshots:\n"  # lines 1-4


@pytest.mark.parametrize(
    "text, line, field, message",
    [
        (HEAD + "  - prompt: the hero\n    seconds: 0\n", 6, "shot 1, seconds", "more than 0"),
        (HEAD + "  - prompt: a\n  - prompt: b\n    seconds: 500\n", 7, "shot 2, seconds", "at most 120"),
        (HEAD + "  - prompt: a\n    seconds: two\n", 6, "shot 1, seconds", 'got text "two"'),
        (HEAD + "  - prompt: a\n  - name: b\n    seconds: 1\n", 6, "shot 2", "missing 'prompt'"),
        (HEAD + "  - prompt: a\n    speed: fast\n", 6, "shot 1, speed", "unknown key"),
        (HEAD + "  - prompt: a\n    characters:\n      - hero\n      - villain\n", 8,
         "shot 1, characters", 'unknown character "villain"; the bible has: hero'),
        (HEAD + "  - prompt: 3\n", 5, "shot 1, prompt", "must be text"),
        (HEAD + "  - prompt: a\n    seed: -1\n", 6, "shot 1, seed", "whole number"),
        (HEAD.replace("bible:\n", "bible:\n  mood: dark\n") + "  - prompt: a\n", 2, "bible.mood", "unknown key"),
        ("shots: []\n", 1, "shots", "no shots"),
        ("fps: 8\nsize: 64 by 64\nshots:\n  - prompt: a\n", 2, "size", "WIDTHxHEIGHT"),
        ("shots:\n  - prompt: a\n    prompt: b\n", 3, "shot 1, prompt", "duplicate key"),
        ("shots:\n  - prompt: a\n   seconds: 1\n", 3, "", "not valid YAML"),
    ],
)  # fmt: skip
def test_yaml_errors_name_line_and_field(tmp_path, text, line, field, message):
    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(ShotListError) as caught:
        load_shot_list(tmp_path / "bad.yaml")
    assert f"bad.yaml:{line}: {field}" in str(caught.value) and message in str(caught.value)
    assert [(p.line, p.field) for p in caught.value.problems] == [(line, field)]


JSON_TEXT = """\
{
  "bible": {"characters": {"hero": "a small red circle"}},
  "shots": [
    {"prompt": "the hero moving left", "seconds": 1},
    {
      "prompt": "the hero moving up",
      "seconds": -2,
      "colour": "red",
      "characters": ["hero",
                     "villain"]
    },
    {"seconds": 1}
  ]
}
"""


def test_json_errors_name_line_and_field_and_all_are_reported(tmp_path):
    (tmp_path / "bad.json").write_text(JSON_TEXT)
    with pytest.raises(ShotListError) as caught:
        load_shot_list(tmp_path / "bad.json")
    assert [(p.line, p.field) for p in caught.value.problems] == [
        (7, "shot 2, seconds"),
        (8, "shot 2, colour"),
        (10, "shot 2, characters"),
        (12, "shot 3"),
    ]
    assert "bad.json:10: shot 2, characters: unknown character" in str(caught.value)
    (tmp_path / "syntax.json").write_text('{\n "shots": [\n  {"prompt": "a",}\n ]\n}\n')
    with pytest.raises(ShotListError, match=r"syntax.json:3: not valid JSON"):
        load_shot_list(tmp_path / "syntax.json")
    with pytest.raises(ShotListError, match="must end in .yaml, .yml or .json"):
        load_shot_list(tmp_path / "shots.txt")


def test_the_bible_is_composed_into_each_shot():
    bible = SceneBible(
        {"hero": "a small red circle", "Mia": "a girl in a red coat"}, "on a navy background"
    )
    assert shot_prompt(bible, Shot("the hero moving left.")) == (
        "a small red circle moving left on a navy background."
    )
    # a shot naming its own background keeps it; a capitalised name is replaced wherever it stands
    assert shot_prompt(bible, Shot("Mia meets the hero on a gray background")) == (
        "a girl in a red coat meets a small red circle on a gray background"
    )
    # "a blue hero" is another object, not the character; listed characters go in front
    assert shot_prompt(bible, Shot("a blue hero moving up", setting="")) == "a blue hero moving up"
    assert shot_prompt(bible, Shot("moving up", characters=("hero",))) == (
        "a small red circle moving up on a navy background"
    )
    styled = SceneBible({}, "in a misty forest", "film grain")
    assert shot_prompt(styled, Shot("a fox runs")) == "a fox runs in a misty forest, film grain"


def test_planner_splits_and_carries_subject_and_setting():
    plan = plan_shots(
        "A small red ball moving left on a black background. Then it moves up; "
        "next, the circle shrinks, cut to a blue square growing on a gray background",
        default_seconds=1.5,
    )
    assert plan.bible == SceneBible({"ball": "a small red ball"}, "on a black background")
    assert [shot_prompt(plan.bible, s) for s in plan.shots] == [
        "a small red ball moving left on a black background",
        "a small red ball moves up on a black background",
        "a small red ball shrinks on a black background",
        "a blue square growing on a gray background",
    ]
    assert [s.seconds for s in plan.shots] == [1.5] * 4
    assert [s.name for s in plan.shots] == ["shot1", "shot2", "shot3", "shot4"]
    free = plan_shots("a girl in a red coat walks to the door. she opens it")
    assert [shot_prompt(free.bible, s) for s in free.shots] == [
        "a girl in a red coat walks to the door",
        "a girl in a red coat opens it",
    ]


def test_generate_shots_cuts_shots_together(pipe):
    plan = ShotList(
        SceneBible({"hero": "a small red circle"}, "on a navy background"),
        (
            Shot("the hero moving left", 1.0, None, "one"),
            Shot("a large yellow square growing on a gray background", 0.5, 9, "two"),
        ),
    )
    seen = []
    video = generate_shots(
        pipe, plan, seed=3, callback=lambda done, total: seen.append((done, total)), steps=2
    )
    assert seen == [(1, 2), (2, 2)]
    rows = video.metadata["shots"]
    assert [(r["name"], r["start_frame"], r["frames"], r["seed"]) for r in rows] == [
        ("one", 0, 9, 3),
        ("two", 9, 5, 9),
    ]
    assert rows[0]["prompt"] == "a small red circle moving left on a navy background"
    assert video.frames.shape == (14, 64, 64, 3) and video.metadata["num_frames"] == 14
    alone = pipe(rows[1]["prompt"], seed=9, seconds=0.5, steps=2)  # a shot is the clip alone
    assert np.array_equal(shot_clips(video)[1], alone.frames)
    frames = video.frames.astype(np.float32)
    steps_within = np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2, 3))
    cut = steps_within[8]  # last frame of shot one -> first of shot two
    assert cut > 15 and cut > 2 * np.delete(steps_within, 8).max(), steps_within


def test_cli_shots_from_a_file_with_a_sheet(tmp_path):
    result = run_kinema(
        "shots", str(EXAMPLE), "-o", "out.mp4", "--steps", "2", "--sheet", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-1500:]
    for text in ("hero", "a small red circle moving left on a navy background", "return", "7"):
        assert text in result.stdout
    assert "wrote out.mp4 and out_sheet.png: 3 shots, 27 frames" in result.stdout
    frames, fps, meta = read_video(tmp_path / "out.mp4")
    assert frames.shape == (27, 64, 64, 3) and fps == 8
    assert [r["start_frame"] for r in json.loads(meta["shots"])] == [0, 9, 18]
    assert (tmp_path / "out_sheet.png").stat().st_size > 0


def test_cli_shots_from_a_prompt(tmp_path):
    result = run_kinema(
        "shots", "--prompt", "a red circle moving left on a black background. then it moves up",
        "--seconds", "0.5", "--steps", "2", "-o", "planned.mp4", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-1500:]
    assert "a red circle moves up on a black background" in result.stdout
    frames, _, _ = read_video(tmp_path / "planned.mp4")
    assert len(frames) == 10


@pytest.mark.parametrize(
    "args, needles",
    [
        (["bad.yaml"], ["bad.yaml:6:", "shot 1, seconds", "at most 120"]),
        ([], ["either a shot list file or --prompt"]),
        (["bad.yaml", "--prompt", "a red circle"], ["either a shot list file or --prompt"]),
        (["missing.yaml"], ["missing.yaml", "cannot read"]),
        (["--prompt", "a red circle", "--seconds", "0"], ["seconds per shot"]),
    ],
)
def test_cli_shots_bad_input_writes_nothing(tmp_path, args, needles):
    (tmp_path / "bad.yaml").write_text(HEAD + "  - prompt: the hero\n    seconds: 600\n")
    result = run_kinema("shots", *args, "-o", "out.mp4", cwd=tmp_path)
    assert_user_error(result, *needles)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]
