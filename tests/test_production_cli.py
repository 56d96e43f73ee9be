"""`kinema generate` through the production pipeline and `kinema verify`, in subprocesses."""

from __future__ import annotations

import pytest
from cli_helpers import assert_user_error, run_kinema

from kinema.io.video import read_video

PROMPT = "a red circle moving left on a black background"


def test_generate_upsamples_signs_and_verifies(tmp_path, home):
    made = run_kinema("generate", "a blue square", "--fps", "16", "--size", "128x128", "--seconds", "1",
                      "--steps", "1", "-o", "clip.mp4", cwd=tmp_path)  # fmt: skip
    assert made.returncode == 0, made.stderr[-1500:]
    assert "expanded prompt (shapes): a blue square " in made.stderr
    assert "base 64x64 at 8 fps; interpolator learned, upscaler learned" in made.stderr
    frames, fps, meta = read_video(tmp_path / "clip.mp4")
    assert frames.shape == (17, 128, 128, 3) and fps == 16 and meta["prompt"] == "a blue square"
    for name in ("clip.thumbnail.png", "clip.spritesheet.png", "clip.quality.json"):
        assert (tmp_path / name).stat().st_size > 0

    checked = run_kinema(
        "verify", "clip.mp4", "--trust", str(home / "c2pa-dev" / "root.pem"), cwd=tmp_path
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert (
        "watermark: found, generation" in checked.stdout and "trust: trusted by" in checked.stdout
    )
    assert (
        "kinema's local development certificate" in checked.stdout
        and checked.stdout.rstrip().endswith("verified")
    )

    data = bytearray((tmp_path / "clip.mp4").read_bytes())
    data[data.find(b"mdat") + 300] ^= 0xFF
    (tmp_path / "tampered.mp4").write_bytes(bytes(data))
    bad = run_kinema("verify", "tampered.mp4", cwd=tmp_path)
    assert bad.returncode == 1 and "NOT verified: the C2PA manifest does not validate" in bad.stdout


@pytest.mark.parametrize(
    "args, needles",
    [
        (["--policy", "missing.yaml"], ["policy file missing.yaml does not exist"]),
        (["--policy", "bad.yaml"], ["unknown frame classifier 'nsfw'", "known: heuristic, none"]),
        (["--expand-url", "http://127.0.0.1:9/v1"], ["prompt expansion at http://127.0.0.1:9/v1"]),
        (["--also", "thumbnail,avi"], ["unknown export format(s) avi"]),
        (["--interpolator", "rife"], ["unknown interpolator 'rife'"]),
        # the 64x64 base clip fits; its 2048x2048 60 fps output (453 GB) does not
        (["--size", "2048x2048", "--fps", "60", "--seconds", "600"],
         ["the output's 36001 frames at 2048x2048", "ask for at most"]),
    ],
)  # fmt: skip
def test_generate_bad_production_input_is_one_line(tmp_path, home, args, needles):
    (tmp_path / "bad.yaml").write_text("frame_classifiers: [nsfw]\n")
    result = run_kinema("generate", PROMPT, "--steps", "1", "-o", "out.mp4", *args, cwd=tmp_path)
    assert_user_error(result, *needles)
    assert not list(tmp_path.glob("out*"))


def test_refused_prompt_and_unreadable_clip(tmp_path, home):
    refused = run_kinema("generate", "a red circle, gore everywhere", "-o", "out.mp4", cwd=tmp_path)
    assert_user_error(refused, "prompt refused by keywords", "'violence'", "nothing was generated")
    assert not list(tmp_path.glob("out*"))
    (tmp_path / "notes.txt").write_text("not a video")
    assert_user_error(run_kinema("verify", "notes.txt", cwd=tmp_path), "cannot read video")
