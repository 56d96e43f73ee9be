"""Image-to-video, first/last frame, keyframes, extension, long clips, hierarchical generation,
motion strength and animate: every mode through the one conditioning mechanism (known latent
frames), on the shipped model with few steps (it has the micro-conditioning inputs) and on tiny
untrained models with and without them (the one without refuses motion, animate and
hierarchical generation)."""

import dataclasses

import numpy as np
import pytest
import torch
from cli_helpers import assert_user_error, run_kinema
from model_helpers import tiny_model

import kinema
from kinema.io.images import save_png
from kinema.io.video import read_video, write_video
from kinema.pipeline.animate import Candidate, animate, choose, parse_motions
from kinema.pipeline.conditioning import FrameConditions, fit_image, known_frames, latent_index
from kinema.pipeline.long_clip import ChainSettings, keyframe_count, seam_flicker
from kinema.pipeline.text_to_video import GenerationError
from kinema.sampling.guidance import KnownFrames
from kinema.world.parse import parse_caption
from kinema.world.render import render
from kinema.world.sampler import place

PROMPT = "a large red circle moving right on a gradient background"


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-10)))


@pytest.fixture(scope="module")
def pipe():
    torch.set_num_threads(1)  # the machine is small; 2 threads contend with other work
    return kinema.load()


@pytest.fixture(scope="module")
def world_clip():
    scene = place(parse_caption(PROMPT), np.random.default_rng(0), 2.0, 64, 64, strict=False)
    return render(scene, 64, 64, 17, 8.0)


@pytest.fixture(scope="module")
def micro_model(tmp_path_factory):
    """A tiny untrained DiT with motion and fps inputs, next to the shipped VAE."""
    return tiny_model(tmp_path_factory.mktemp("micro"), micro_conditioning=True, perturb=0.05)


@pytest.fixture(scope="module")
def plain_model(tmp_path_factory):
    """The same without them: no motion and no fps input."""
    return tiny_model(tmp_path_factory.mktemp("plain"), micro_conditioning=False, perturb=0.05)


def test_image_to_video_keeps_the_first_frame(pipe, world_clip):
    video = pipe(PROMPT, image=world_clip[0], steps=2, seconds=2)
    assert video.frames.shape == (17, 64, 64, 3)
    assert psnr(video.frames[0], world_clip[0]) >= 28.0
    assert video.metadata["mode"] == "image-to-video" and video.metadata["pinned_frames"] == [0]
    plain = pipe(PROMPT, steps=2, seconds=2)
    assert psnr(plain.frames[0], world_clip[0]) < 25.0  # the image is what made it match


def test_first_last_and_keyframes_land_on_their_frames(pipe, world_clip):
    video = pipe(PROMPT, image=world_clip[0], last_image=world_clip[16], steps=2)
    assert psnr(video.frames[0], world_clip[0]) >= 28.0
    assert psnr(video.frames[16], world_clip[16]) >= 25.0
    keyed = pipe(PROMPT, keyframes={1.0: world_clip[8]}, steps=2)  # frame 8 at 8 fps
    assert keyed.metadata["pinned_frames"] == [8]
    assert psnr(keyed.frames[8], world_clip[8]) >= 25.0


def test_image_of_another_size_is_fitted_with_a_note(pipe, world_clip):
    big = np.repeat(np.repeat(world_clip[0], 2, axis=0), 3, axis=1)  # 128x192
    video = pipe(PROMPT, image=big, steps=1, seconds=1)
    assert any("192x128" in n and "crop" in n for n in video.metadata["notes"])
    for fit in ("crop", "pad", "resize"):
        out, note = fit_image(big, 64, 48, fit)
        assert out.shape == (48, 64, 3) and fit in note
    padded, _ = fit_image(big, 64, 64, "pad")
    assert padded[:10].max() == 0 and padded[30].max() > 0  # bars above, picture in the middle
    with pytest.raises(ValueError, match="unknown fit"):
        fit_image(big, 64, 64, "stretch")


def test_conditioning_errors_name_the_problem(pipe, world_clip):
    with pytest.raises(GenerationError, match="outside the clip"):
        pipe(PROMPT, keyframes={3.0: world_clip[0]}, steps=1)
    with pytest.raises(GenerationError, match="closer than 4 frames"):
        pipe(PROMPT, keyframes={0.75: world_clip[6], 1.0: world_clip[8]}, steps=1)
    with pytest.raises(GenerationError, match="more than one frame"):
        pipe(PROMPT, last_image=world_clip[0], seconds=0, steps=1)
    with pytest.raises(GenerationError, match="motion must be 0..255"):
        pipe(PROMPT, motion=300, steps=1)
    with pytest.raises(GenerationError, match="image noise"):
        pipe(PROMPT, image=world_clip[0], image_noise=0.9, steps=1)


def test_kinema_tiny_takes_motion_and_hierarchical(pipe):
    """The shipped model has the micro-conditioning inputs (motion strength and fps)."""
    assert pipe.t2v.dit.cfg.micro_conditioning
    video = pipe(PROMPT, motion=100, steps=1, seconds=1)
    assert video.frames.shape == (9, 64, 64, 3) and video.metadata["motion"] == 100
    assert pipe(PROMPT, steps=1, seconds=1).metadata["motion"] is None  # the model's choice
    keyed = pipe(PROMPT, seconds=4, steps=1, hierarchical=True)
    assert keyed.frames.shape == (33, 64, 64, 3) and keyed.metadata["mode"] == "hierarchical"


def test_a_model_without_micro_conditioning_refuses_motion_animate_and_hierarchical(
    plain_model, world_clip
):
    plain = kinema.load(plain_model)
    assert not plain.t2v.dit.cfg.micro_conditioning
    with pytest.raises(GenerationError, match="no motion input"):
        plain(PROMPT, motion=100, steps=1)
    with pytest.raises(GenerationError, match="needs a model with an fps input"):
        plain(PROMPT, seconds=4, steps=1, hierarchical=True)
    with pytest.raises(ValueError, match="no motion input, so it cannot animate"):
        animate(plain, world_clip[0], PROMPT, (20.0, 220.0), steps=1, seconds=1)
    assert plain(PROMPT, steps=1, seconds=1).metadata["motion"] is None  # without motion: works


def test_latent_index_and_known_frames(pipe, world_clip):
    assert [latent_index(f) for f in (0, 1, 4, 5, 8, 16)] == [0, 1, 1, 2, 2, 4]
    vae = pipe.t2v.vae
    shape = pipe.t2v.latent_shape(pipe.settings(num_frames=17))
    cond = FrameConditions(images=((0, world_clip[0]), (16, world_clip[16])))
    known = known_frames(vae, cond, shape, 17)
    assert known.frame_mask.tolist() == [True, False, False, False, True]
    prefix = known_frames(vae, FrameConditions(prefix=world_clip[:9]), shape, 17)
    assert prefix.frame_mask.tolist() == [True, True, True, False, False]
    with pytest.raises(ValueError, match="1 \\+ 4k"):
        known_frames(vae, FrameConditions(prefix=world_clip[:8]), shape, 17)


def test_known_frames_with_noise_show_noisy_and_restore_clean():
    lat, noise = torch.ones(1, 2, 3, 2, 2), torch.zeros(1, 2, 3, 2, 2)
    known = KnownFrames(lat, torch.tensor([True, False, False]), 0.25, noise)
    x = torch.full((1, 2, 3, 2, 2), 5.0)
    shown = known.apply(x)
    assert torch.allclose(shown[:, :, 0], torch.full_like(shown[:, :, 0], 0.75))
    assert torch.equal(shown[:, :, 1:], x[:, :, 1:])
    assert torch.equal(known.restore(shown)[:, :, 0], lat[:, :, 0])
    with pytest.raises(ValueError, match="needs the noise"):
        KnownFrames(lat, torch.tensor([True, False, False]), 0.1)


def test_long_clip_is_a_chain_of_windows(pipe):
    video = pipe(PROMPT, seconds=5, steps=1)  # 41 frames > one window of 33
    assert video.frames.shape == (41, 64, 64, 3)
    assert video.metadata["mode"] == "chain"
    assert video.metadata["window_starts"] == [17, 25, 33]  # 17, then 8 new frames per window
    again = pipe(PROMPT, seconds=5, steps=1)
    assert np.array_equal(video.frames, again.frames)  # per-window seeds: reproducible
    with pytest.raises(GenerationError, match="no new frames"):
        pipe(PROMPT, seconds=5, steps=1, chain=ChainSettings(window_frames=9))


def test_long_clips_are_chains_and_hierarchical_when_asked(micro_model, plain_model):
    pipe = kinema.load(micro_model)
    assert pipe.long_mode(pipe.settings(seconds=4)) == "one window"  # 33 frames: one window
    long = pipe.settings(seconds=20)
    assert pipe.long_mode(long) == "chain"
    assert pipe.long_mode(long, hierarchical=True) == "hierarchical"
    assert pipe.long_mode(pipe.settings(seconds=2), hierarchical=True) == "hierarchical"
    with pytest.raises(GenerationError, match="takes no images"):
        pipe.long_mode(long, hierarchical=True, pinned=True)
    assert keyframe_count(161) == 21 and keyframe_count(41) == 9  # 1 + 4k frames, every 8th
    with pytest.raises(GenerationError, match="needs a model with an fps input"):
        kinema.load(plain_model)(PROMPT, seconds=5, steps=1, hierarchical=True)


def test_chains_reanchor_on_the_first_frame_only_when_asked(micro_model, monkeypatch):
    pipe = kinema.load(micro_model)
    shown = []  # per window: the anchor image its prefix shows in place of its first frame
    generate = pipe.t2v.generate

    def spy(prompt, s, callback=None, conditions=None):
        shown.append(None if conditions is None else conditions.anchor)
        return generate(prompt, s, callback, conditions)

    monkeypatch.setattr(pipe.t2v, "generate", spy)
    plain = pipe(PROMPT, seconds=5, steps=1)
    assert len(shown) == 4 and all(a is None for a in shown)  # the default: no anchor
    shown.clear()
    anchored = pipe(PROMPT, seconds=5, steps=1, chain=ChainSettings(anchor=True))
    assert shown[0] is None and len(shown) == 4
    assert all(np.array_equal(a, anchored.frames[0]) for a in shown[1:])
    assert np.array_equal(plain.frames[:13], anchored.frames[:13])  # the same first window
    assert not np.array_equal(plain.frames, anchored.frames)


def test_seam_flicker_separates_seams_from_the_inside():
    frames = np.zeros((17, 4, 4, 3), np.uint8)
    frames[9:] = 50  # a jump between frames 8 and 9, in the band of a window starting at 9
    frames[14:] = 60  # a smaller one inside the window
    at, inside = seam_flicker(frames, [9])
    assert at == pytest.approx(50 / 5) and inside == pytest.approx(10 / 11)


def test_extension_keeps_the_clip_and_adds_frames(pipe, world_clip):
    video = pipe.extend(world_clip, PROMPT, seconds=1.0, steps=2)
    assert video.frames.shape == (17 + 8, 64, 64, 3)
    assert np.array_equal(video.frames[:13], world_clip[:13])  # untouched before the blend
    assert psnr(video.frames[16], world_clip[16]) > 25  # the cross-faded seam stays close
    assert video.metadata["mode"] == "extension"
    for endless, needle in ((float("inf"), "more than 0"), (1e9, "half this machine's memory")):
        with pytest.raises(GenerationError, match=needle):
            pipe.extend(world_clip, PROMPT, seconds=endless, steps=2)


def test_micro_conditioning_motion_and_fps_change_the_prediction(micro_model):
    from kinema.models import load_dit

    dit = load_dit(micro_model / "dit.safetensors")
    x, t = torch.randn(2, 16, 3, 8, 8), torch.full((2,), 0.5)
    ctx, mask = torch.randn(2, 4, 384), torch.ones(2, 4, dtype=torch.bool)
    with torch.no_grad():
        base = dit(x, t, ctx, mask)
        nan = dit(x, t, ctx, mask, torch.full((2,), float("nan")), torch.full((2,), float("nan")))
        slow = dit(x, t, ctx, mask, torch.tensor([10.0, 10.0]))
        fast = dit(x, t, ctx, mask, torch.tensor([10.0, 250.0]))
        fps = dit(x, t, ctx, mask, None, torch.tensor([1.0, 8.0]))
    assert torch.equal(base, nan)  # not given = NaN = no input
    assert not torch.allclose(base, slow)
    assert torch.equal(slow[0], fast[0]) and not torch.allclose(slow[1], fast[1])  # per sample
    assert not torch.allclose(fps[0], fps[1])


def test_hierarchical_pins_the_keyframe_pass(micro_model):
    pipe = kinema.load(micro_model)
    video = pipe(PROMPT, seconds=4, steps=1, hierarchical=True)
    assert video.frames.shape == (33, 64, 64, 3) and video.metadata["mode"] == "hierarchical"
    assert video.metadata["keyframes"] == 5  # frames 0, 8, 16, 24, 32 at 1 fps
    with pytest.raises(GenerationError, match="takes no images"):
        pipe(PROMPT, seconds=4, steps=1, hierarchical=True, image=video.frames[0])


def test_animate_chooses_most_motion_within_the_budget():
    c = [
        Candidate(m, None, w, mm)
        for m, w, mm in [(50, 1e-4, 0.1), (127, 1.4e-4, 0.5), (200, 3e-4, 0.9)]
    ]
    result = choose(c)  # budget 1.5x the steadiest: 1.5e-4
    assert result.chosen == 1 and result.within_budget and result.budget == pytest.approx(1.5e-4)
    assert choose(c, max_warp=1e-3).chosen == 2
    assert choose(c, max_warp=1e-5).chosen == 0 and not choose(c, max_warp=1e-5).within_budget
    assert parse_motions("50, 127,200") == (50.0, 127.0, 200.0)
    with pytest.raises(ValueError, match="0..255"):
        parse_motions("50,300")


def test_cli_modes(tmp_path, world_clip):
    save_png(tmp_path / "first.png", world_clip[0])
    save_png(tmp_path / "last.png", world_clip[16])
    write_video(tmp_path / "clip.mp4", world_clip, 8)
    ok = run_kinema("generate", PROMPT, "--image", "first.png", "--last-image", "last.png",
                    "--steps", "2", "-o", "i2v.mp4", cwd=tmp_path)  # fmt: skip
    assert ok.returncode == 0, ok.stderr[-1500:]
    frames, _, meta = read_video(tmp_path / "i2v.mp4")
    assert frames.shape == (17, 64, 64, 3) and psnr(frames[0], world_clip[0]) > 26  # after H.264
    ext = run_kinema("extend", "clip.mp4", PROMPT, "--seconds", "1", "--steps", "2",
                     "-o", "ext.mp4", cwd=tmp_path)  # fmt: skip
    assert ext.returncode == 0, ext.stderr[-1500:]
    assert read_video(tmp_path / "ext.mp4")[0].shape[0] == 25
    # the default model, kinema-tiny, has a motion input
    anim = run_kinema("animate", "first.png", PROMPT, "--motion", "20,220", "--steps", "1",
                      "-o", "anim.mp4", cwd=tmp_path)  # fmt: skip
    assert anim.returncode == 0, anim.stderr[-1500:]
    assert "chosen" in anim.stdout and (tmp_path / "anim_tradeoff.png").stat().st_size > 1000
    assert float(read_video(tmp_path / "anim.mp4")[2]["motion"]) in (20, 220)


@pytest.mark.parametrize(
    "args, needles",
    [
        (["generate", PROMPT, "--image", "missing.png"], ["cannot read image", "missing.png"]),
        (["generate", PROMPT, "--image", "clip.mp4"], ["cannot read image", "clip.mp4"]),
        (["generate", PROMPT, "--keyframe", "1.0"], ["SECONDS:PATH"]),
        (
            ["generate", PROMPT, "--keyframe", "1:first.png", "--keyframe", "0.5:first.png"],
            ["increasing time"],
        ),  # fmt: skip
        (["generate", PROMPT, "--keyframe", "9:first.png"], ["outside the clip"]),
        (["generate", PROMPT, "--image", "first.png", "--fit", "stretch"], ["unknown fit"]),
        (["extend", "first.png", PROMPT], ["single frame"]),
        (["extend", "notes.txt", PROMPT], ["cannot read video"]),
        (["animate", "first.png", PROMPT, "--motion", "abc"], ["motion settings"]),
    ],
)
def test_cli_mode_errors(tmp_path, world_clip, args, needles):
    save_png(tmp_path / "first.png", world_clip[0])
    write_video(tmp_path / "clip.mp4", world_clip, 8)
    (tmp_path / "notes.txt").write_text("not a video")
    result = run_kinema(*args, "--steps", "1", "-o", "out.mp4", cwd=tmp_path)
    assert_user_error(result, *needles)
    assert not (tmp_path / "out.mp4").exists()


def test_cli_animate_refuses_a_model_without_a_motion_input(tmp_path, world_clip, plain_model):
    save_png(tmp_path / "first.png", world_clip[0])
    result = run_kinema("animate", "first.png", PROMPT, "--model", str(plain_model),
                        "--steps", "1", "-o", "out.mp4", cwd=tmp_path)  # fmt: skip
    assert_user_error(result, "no motion input", "cannot animate")
    assert not (tmp_path / "out.mp4").exists()


def test_settings_carry_motion_and_image_noise(pipe):
    s = pipe.settings(motion=None, image_noise=0.1)
    assert dataclasses.asdict(s)["image_noise"] == 0.1 and s.motion is None
