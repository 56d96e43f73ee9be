"""Frame stages of the production pipeline on Shapes-world ground truth: interpolation to any
fps, upscaling, and the safety checks on every frame and on the clip."""

from __future__ import annotations

import numpy as np
import pytest

from kinema.production.interpolate import (
    BlendInterpolator,
    FlowInterpolator,
    retime,
    retime_positions,
)
from kinema.production.policy import ColourSignature, SafetyPolicy
from kinema.production.safety import (
    BlankClipClassifier,
    FlashClipClassifier,
    HeuristicFrameClassifier,
    SafetyError,
    check_output,
    classifiers_for,
)
from kinema.production.upscale import ResizeUpscaler
from kinema.world import parse_caption, place, render


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255**2 / max(mse, 1e-10)))


def scene(prompt: str, seed: int = 0, size: int = 64):
    return place(parse_caption(prompt), np.random.default_rng(seed), 2.0, size, size)


@pytest.fixture(scope="module")
def moving():
    return scene("a large yellow square moving right quickly on a navy background", seed=1)


def test_positions_for_any_ratio():
    assert np.allclose(retime_positions(17, 8, 24), np.arange(49) / 3)
    assert len(retime_positions(17, 8, 16)) == 33 and len(retime_positions(17, 8, 30)) == 61
    assert np.allclose(retime_positions(17, 8, 4), np.arange(9) * 2)  # fewer frames: a subsample
    odd = retime_positions(21, 8, 25)  # 2.5 s at 25 fps is 62.5 frames: 64 frames, ending on 20
    assert len(odd) == 64 and odd[0] == 0 and odd[-1] == 20 and np.all(np.diff(odd) > 0)
    assert np.allclose(np.diff(odd), 20 / 63)  # evenly spaced: stretched by 0.5 / 62.5
    with pytest.raises(ValueError, match="positive"):
        retime_positions(17, 8, 0)


@pytest.mark.parametrize("interpolator", [FlowInterpolator(), BlendInterpolator()])
def test_retime_keeps_base_frames_at_every_kth_index(moving, interpolator):
    base = render(moving, 64, 64, 17, 8)
    for k in (2, 3):
        out = retime(base, 8, 8 * k, interpolator)
        assert out.shape == (16 * k + 1, 64, 64, 3) and np.array_equal(out[::k], base)
    odd = retime(base, 8, 20, interpolator)  # 2.5x: in-betweens at fractional positions
    assert odd.shape[0] == 41 and np.array_equal(odd[::5], base[::2])
    assert np.array_equal(retime(base[:1], 8, 24, interpolator), base[:1])  # a still image


def test_flow_interpolation_beats_blending_on_true_in_betweens(moving):
    base = render(moving, 64, 64, 17, 8)
    truth = render(moving, 64, 64, 49, 24)
    assert np.array_equal(truth[::3], base)  # the renderer's promise the benchmark relies on
    between = np.arange(49) % 3 != 0
    flow = retime(base, 8, 24, FlowInterpolator())
    blend = retime(base, 8, 24, BlendInterpolator())
    p_flow, p_blend = psnr(flow[between], truth[between]), psnr(blend[between], truth[between])
    assert p_flow > p_blend + 3, (p_flow, p_blend)


def test_upscalers_match_the_true_high_resolution_render(moving):
    low = render(moving, 64, 64, 5, 8)
    high = render(moving, 256, 256, 5, 8)
    for name in ("bicubic", "lanczos"):
        up = ResizeUpscaler(name)(low, 256, 256)
        assert up.shape == high.shape and psnr(up, high) > 24
    assert ResizeUpscaler("bicubic")(low, 64, 64) is low
    wide = ResizeUpscaler("area")(low, 96, 48)
    assert wide.shape == (5, 48, 96, 3)
    with pytest.raises(ValueError, match="unknown upscaler 'sinc'"):
        ResizeUpscaler("sinc")


# ----------------------------------------------------------------------------- safety


class FlagMiddle:
    """A fake classifier that flags one frame."""

    name = "fake-nsfw"

    def __init__(self, index: int):
        self.index, self.seen = index, []

    def __call__(self, frame):
        self.seen.append(frame)
        return "looks unsafe" if len(self.seen) - 1 == self.index else None


def test_every_frame_is_checked_and_a_flag_names_frame_classifier_and_reason(moving):
    frames = render(moving, 64, 64, 17, 8)
    fake = FlagMiddle(8)
    with pytest.raises(SafetyError) as err:
        check_output(frames, 8, [fake], [])
    assert (err.value.frame, err.value.classifier, err.value.reason) == (
        8,
        "fake-nsfw",
        "looks unsafe",
    )
    assert "frame 8 flagged by safety classifier 'fake-nsfw': looks unsafe" in str(err.value)
    clean = FlagMiddle(99)
    report = check_output(frames, 8, [clean], [FlashClipClassifier()])
    assert len(clean.seen) == 17 and report.frames_checked == 17  # every frame, not first/last


def test_heuristic_frame_classifier(moving):
    frames = render(moving, 64, 64, 3, 8)
    policy = SafetyPolicy(colour_signatures=(ColourSignature("navy", (18, 26, 72), 4, 0.5),))
    heuristic = HeuristicFrameClassifier(SafetyPolicy())
    assert heuristic(frames[0]) is None
    assert heuristic(np.full((64, 64, 3), 7, np.uint8)) is None  # one blank frame is no flag
    blank = BlankClipClassifier(SafetyPolicy())
    still = np.full((5, 64, 64, 3), 7, np.uint8)
    assert "every frame is near-uniform" in blank(still, 8)[1]
    assert blank(np.concatenate([still, frames]), 8) is None  # a clip that fades in is fine
    assert "colour signature 'navy' covers" in HeuristicFrameClassifier(policy)(frames[0])
    frame_checks, clip_checks = classifiers_for(SafetyPolicy(frame_classifiers=("none",)))
    assert (
        frame_checks[0](np.zeros((8, 8, 3), np.uint8)) is None and clip_checks[0].name == "flashes"
    )


def test_flash_classifier_flags_strobing_not_motion(moving):
    flashes = FlashClipClassifier()
    assert flashes(render(moving, 64, 64, 17, 8), 8) is None
    strobe = np.zeros((24, 32, 32, 3), np.uint8)
    strobe[::2] = 255  # black/white every frame: 12 flashes a second at 24 fps
    frame, reason = flashes(strobe, 24)
    assert frame == 7 and "more than 3 flashes within one second in the frame" in reason
    slow = np.zeros((48, 32, 32, 3), np.uint8)
    slow[(np.arange(48) // 8) % 2 == 1] = 255  # 1.5 flashes a second
    assert flashes(slow, 24) is None
    corner = np.zeros((24, 32, 32, 3), np.uint8)
    corner[::2, :16, :16] = 120  # a strobing quadrant: swings 0.19, the whole frame only 0.05
    assert "top-left quadrant" in flashes(corner, 24)[1]
