"""The invisible watermark: the error-correcting code, the read-back after the default H.264
export at 64x64, a cut clip, unmarked clips, and agreement with invisible-watermark's dwtDctSvd."""

from __future__ import annotations

import numpy as np
import pytest

from kinema.io.video import h264_round_trip, read_video, write_video
from kinema.production import watermark as wm
from kinema.world import random_scene, render


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255**2 / max(mse, 1e-10)))


def test_secded_corrects_one_error_per_word_and_detects_two():
    code = wm.encode_payload(0xDEADBEEF)
    assert code.shape == (64,) and wm.decode_code(code) == (0xDEADBEEF, 0, 0)
    one = code.copy()
    one[[0, 9, 18, 27, 36, 45, 54, 63]] ^= 1  # one error in each of the 8 interleaved words
    assert wm.decode_code(one) == (0xDEADBEEF, 8, 0)
    two = code.copy()
    two[[0, 8]] ^= 1  # two errors in word 0
    assert wm.decode_code(two)[2] == 1
    with pytest.raises(wm.WatermarkError, match="32-bit"):
        wm.encode_payload(2**32)
    assert wm.payload_from_id("0a1b2c3d4e5f") == 0x0A1B2C3D


def test_read_back_after_the_default_h264_export_at_64x64(tmp_path):
    """>= 99% of payload bits right over held-out world clips at the default 64x64, 8 fps, 2 s."""
    rng = np.random.default_rng(2024)
    right, total, quality = 0, 0, []
    for i in range(8):
        frames = render(random_scene(rng, 2.0, 64, 64), 64, 64, 17, 8)
        payload = int(rng.integers(0, 2**32))
        marked = wm.embed(frames, payload)
        quality.append(psnr(marked, frames))
        path = write_video(tmp_path / f"clip{i}.mp4", marked, 8)  # H.264 yuv420p, crf 23
        reading = wm.read(read_video(path)[0])
        assert reading.found and reading.frame_offset == 0, reading
        got = reading.payload
        right += sum(((got >> b) & 1) == ((payload >> b) & 1) for b in range(32))
        total += 32
    assert right / total >= 0.99
    assert np.mean(quality) > 38  # invisible: chroma-only changes, about 40 dB


def test_a_cut_clip_still_reads_and_unmarked_clips_do_not():
    rng = np.random.default_rng(5)
    frames = render(random_scene(rng, 2.0, 64, 64), 64, 64, 33, 8)
    marked = h264_round_trip(wm.embed(frames, 0x1234ABCD))
    cut = wm.read(marked[7:30])
    assert cut.found and cut.payload_hex == "1234abcd" and cut.frame_offset == 7
    for _ in range(6):
        plain = render(random_scene(rng, 2.0, 64, 64), 64, 64, 17, 8)
        assert not wm.read(h264_round_trip(plain)).found
    assert not wm.read(np.zeros((17, 64, 64, 3), np.uint8)).found  # flat content: the key's job
    one = wm.read(wm.embed(frames[:1], 7))  # one 64x64 frame: 1 vote per bit, never "found"
    assert one.votes_per_bit == 1 and not one.found
    with pytest.raises(wm.WatermarkError, match="too small"):
        wm.embed(np.zeros((2, 6, 6, 3), np.uint8), 1)


def test_larger_frames_repeat_the_code():
    rng = np.random.default_rng(9)
    frames = render(random_scene(rng, 2.0, 256, 128), 256, 128, 5, 8)
    reading = wm.read(h264_round_trip(wm.embed(frames, 0xCAFEF00D)))
    assert reading.found and reading.payload == 0xCAFEF00D and reading.votes_per_bit == 40


def test_blocks_agree_with_invisible_watermark_dwtdctsvd():
    """Our vectorised embedding and reading give the same block bits as the package's."""
    dwt = pytest.importorskip("imwatermark.dwtDctSvd")
    rng = np.random.default_rng(3)
    frame = render(random_scene(rng, 2.0, 64, 64), 64, 64, 1, 8)[0]
    bits = rng.integers(0, 2, 64).tolist()
    theirs = dwt.EmbedDwtDctSvd(bits, wmLen=64, scales=[0, wm.SCALE, 0], block=4)
    ours = wm.embed_frame(frame, np.array(bits, np.uint8))
    assert list(theirs.decode(np.ascontiguousarray(ours[..., ::-1])).astype(int)) == bits
    packaged = theirs.encode(np.ascontiguousarray(frame[..., ::-1]))[..., ::-1]
    assert np.mean(wm.read_frame(np.ascontiguousarray(packaged)) == np.array(bits)) >= 0.95
    assert psnr(ours, frame) > psnr(packaged, frame)  # no swapped detail bands, rounding
