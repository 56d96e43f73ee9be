"""Tests for kinema.io: video round trips, metadata, atomic writes, image sheets."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from kinema.io import (
    ImageError,
    VideoError,
    contact_sheet,
    h264_round_trip,
    load_image,
    read_video,
    save_png,
    spritesheet,
    write_video,
)
from kinema.io.images import GAP


def smooth_clip(frames: int = 9, height: int = 32, width: int = 48) -> np.ndarray:
    """(T, H, W, 3) uint8: slow colour gradients drifting over time (easy to compress)."""
    t, y, x = np.meshgrid(
        np.arange(frames), np.arange(height), np.arange(width), indexing="ij", sparse=True
    )
    red = 128 + 90 * np.sin(np.pi * (x / width + t / (2 * frames)))
    green = 128 + 90 * np.cos(np.pi * (y / height - t / (3 * frames)))
    blue = 64 + 128 * (x + y) / (width + height) + 0 * t
    return np.stack(np.broadcast_arrays(red, green, blue), axis=-1).round().astype(np.uint8)


def mean_abs_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


@pytest.mark.parametrize("fps", [8, 7.5, 24])
def test_mp4_round_trip_keeps_shape_fps_and_pixels(tmp_path: Path, fps: float) -> None:
    clip = smooth_clip()
    path = write_video(tmp_path / "clip.mp4", clip, fps)
    frames, read_fps, _ = read_video(path)
    assert frames.shape == clip.shape and frames.dtype == np.uint8
    assert read_fps == pytest.approx(fps)
    assert mean_abs_error(frames, clip) < 3.5  # 4:2:0 chroma alone costs ~2


def test_mp4_metadata_survives_round_trip(tmp_path: Path) -> None:
    metadata = {
        "title": "a red ball",
        "comment": "seed 7",
        "prompt": "a red ball bounces; ünïcode ok",
        "seed": "7",
        "empty": "",
    }
    _, _, read = read_video(write_video(tmp_path / "clip.mp4", smooth_clip(), 8, metadata))
    assert read == metadata


def test_muxer_owned_metadata_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="encoder"):
        write_video(tmp_path / "clip.mp4", smooth_clip(), 8, {"encoder": "me"})
    assert list(tmp_path.iterdir()) == []


def test_webm_round_trip_with_metadata(tmp_path: Path) -> None:
    if "libvpx-vp9" not in av.codecs_available:
        pytest.skip("PyAV build without libvpx-vp9")
    clip = smooth_clip(frames=5)
    metadata = {"title": "t", "prompt": "p"}
    frames, fps, read = read_video(write_video(tmp_path / "clip.webm", clip, 7.5, metadata, crf=20))
    assert frames.shape == clip.shape
    assert fps == pytest.approx(7.5)
    assert read == metadata
    assert mean_abs_error(frames, clip) < 6.0


def test_odd_sizes_are_padded_by_edge_replication(tmp_path: Path) -> None:
    clip = smooth_clip(frames=3, height=31, width=47)
    frames, _, _ = read_video(write_video(tmp_path / "odd.mp4", clip, 8))
    assert frames.shape == (3, 32, 48, 3)
    assert mean_abs_error(frames[:, :31, :47], clip) < 4.0
    assert mean_abs_error(frames[:, 31, :47], clip[:, 30]) < 6.0  # replicated last row


def test_h264_round_trip_keeps_odd_shape() -> None:
    clip = smooth_clip(frames=4, height=33, width=21)
    out = h264_round_trip(clip, fps=8, crf=18)
    assert out.shape == clip.shape and out.dtype == np.uint8
    assert mean_abs_error(out, clip) < 4.0
    assert mean_abs_error(h264_round_trip(clip, crf=45), clip) > mean_abs_error(out, clip)


def test_gif_writes_and_reads_back(tmp_path: Path) -> None:
    clip = smooth_clip()
    path = write_video(tmp_path / "clip.gif", clip, 10, {"comment": "hello"})
    with Image.open(path) as gif:
        assert gif.n_frames == len(clip)
        assert gif.size == (48, 32)
        assert gif.info["duration"] == 100
        assert gif.info["comment"] == b"hello"
        gif.seek(4)
        assert mean_abs_error(np.asarray(gif.convert("RGB")), clip[4]) < 8.0
    frames, fps, metadata = read_video(path)
    assert frames.shape == clip.shape
    assert fps == pytest.approx(10)
    assert metadata == {"comment": "hello"}


def test_gif_refuses_keys_it_cannot_store(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="comment"):
        write_video(tmp_path / "clip.gif", smooth_clip(), 8, {"prompt": "x"})


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        (np.zeros((4, 8, 8), np.float32), r"uint8 \(T, H, W, 3\), got float32 \(4, 8, 8\)"),
        (np.zeros((4, 8, 8, 3), np.float32), "got float32"),
        (np.zeros((4, 8, 8, 4), np.uint8), r"\(4, 8, 8, 4\)"),
        (np.zeros((0, 8, 8, 3), np.uint8), "non-empty"),
    ],
)
def test_invalid_frames_raise_and_leave_no_file(
    tmp_path: Path, frames: np.ndarray, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        write_video(tmp_path / "bad.mp4", frames, 8)
    assert list(tmp_path.iterdir()) == []


def test_failed_encode_leaves_no_partial_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="crf"):
        write_video(tmp_path / "bad.mp4", smooth_clip(), 8, crf=99)
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_existing_file(tmp_path: Path) -> None:
    path = write_video(tmp_path / "clip.mp4", smooth_clip(), 8)
    before = path.read_bytes()
    with pytest.raises(ValueError):
        write_video(path, smooth_clip(), 8, crf=-1)
    assert path.read_bytes() == before
    assert list(tmp_path.iterdir()) == [path]


def test_bad_fps_and_extension_raise(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fps"):
        write_video(tmp_path / "clip.mp4", smooth_clip(), 0)
    with pytest.raises(ValueError, match="extension"):
        write_video(tmp_path / "clip.avi", smooth_clip(), 8)


@pytest.mark.parametrize(
    "text",
    ["hello, this is not a video\n", '[project]\nname = "kinema"\n'],  # the second parses as LRC
)
def test_read_video_of_text_file_raises_video_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "notes.mp4"
    path.write_text(text)
    with pytest.raises(VideoError, match="notes.mp4") as info:
        read_video(path)
    assert "\n" not in str(info.value)


def test_read_video_of_missing_file_raises_video_error(tmp_path: Path) -> None:
    with pytest.raises(VideoError, match=r"missing\.mp4.*No such file"):
        read_video(tmp_path / "missing.mp4")


def test_png_round_trip_and_bad_image(tmp_path: Path) -> None:
    image = smooth_clip(frames=1)[0]
    path = save_png(tmp_path / "a.png", image)
    assert np.array_equal(load_image(path), image)
    (tmp_path / "b.png").write_text("not a png")
    with pytest.raises(ImageError, match="b.png"):
        load_image(tmp_path / "b.png")
    with pytest.raises(ImageError, match="missing.png"):
        load_image(tmp_path / "missing.png")


def test_contact_sheet_shape() -> None:
    clips = [smooth_clip(9, 32, 48), smooth_clip(5, 16, 20)]
    sheet = contact_sheet(clips, frames_per_clip=8)
    # row 0: 8 of 9 frames; row 1: all 5 frames.
    width = 2 * GAP + max(8 * 48 + 7 * GAP, 5 * 20 + 4 * GAP)
    height = GAP + (32 + GAP) + (16 + GAP)
    assert sheet.shape == (height, width, 3) and sheet.dtype == np.uint8
    assert np.array_equal(sheet[GAP : GAP + 32, GAP : GAP + 48], clips[0][0])
    last = GAP + 7 * (48 + GAP)
    assert np.array_equal(sheet[GAP : GAP + 32, last : last + 48], clips[0][8])
    assert sheet[0, 0].max() < 64  # dark background

    labelled = contact_sheet(clips, labels=["a red ball", None], frames_per_clip=8)
    extra = labelled.shape[0] - height
    assert labelled.shape[1] == width and extra > 0 and extra % 2 == 0
    assert labelled[: extra // 2].max() > 128  # text was drawn in the first strip


def test_contact_sheet_max_width() -> None:
    sheet = contact_sheet([smooth_clip(9, 32, 48)], frames_per_clip=8, max_width=200)
    assert sheet.shape[1] <= 200
    assert sheet.shape[0] < 32 + 2 * GAP


def test_spritesheet_grid() -> None:
    clip = smooth_clip(5, 8, 6)
    grid = spritesheet(clip)
    assert grid.shape == (2 * 8, 3 * 6, 3)
    assert np.array_equal(grid[8:16, 6:12], clip[4])
    assert not grid[8:, 12:].any()
    assert spritesheet(clip, columns=5).shape == (8, 30, 3)


def test_load_image_applies_the_exif_orientation(tmp_path):
    from PIL import Image

    from kinema.io.images import load_image

    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :20] = 255  # left half white
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # orientation: the camera was turned; show rotated 90 degrees clockwise
    image.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    upright = load_image(tmp_path / "phone.jpg")
    assert upright.shape == (40, 20, 3)  # portrait, as a viewer shows it
    assert upright[:20].mean() > 200 and upright[20:].mean() < 50  # white half on top


def test_frames_and_tensors_convert_both_ways_exactly():
    import torch

    from kinema.io.frames import to_frames, to_tensor

    frames = np.random.default_rng(0).integers(0, 256, (5, 8, 6, 3), dtype=np.uint8)
    video = to_tensor(frames[:, ::-1])  # a non-contiguous view is fine
    assert video.shape == (3, 5, 8, 6) and video.min() >= -1 and video.max() <= 1
    assert np.array_equal(to_frames(video).numpy(), frames[:, ::-1])
    batch = to_tensor(np.stack([frames, frames[::-1]]))  # leading dims are kept
    assert batch.shape == (2, 3, 5, 8, 6) and torch.equal(batch[0], to_tensor(frames))
    # values past the range clip to black and white rather than wrapping around
    assert to_frames(torch.tensor([-3.0, 3.0]).view(1, 2, 1, 1)).flatten().tolist() == [0, 255]
