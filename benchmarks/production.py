"""The production pipeline: seconds per stage, and what the classical stages are worth (JSON).

    python benchmarks/production.py [--clips 24] [--steps 20] [--threads 1] [--only NAME]
                                    [--interp interp.safetensors] [--sr sr.safetensors]

- stages: one `kinema generate`-like run of kinema-tiny to 24 fps and 256x256 (base 64x64 at
  8 fps, 17 frames), each stage timed, against the plain base generation measured in the same
  run (the ratio is what the issue bounds: at most 3x);
- interpolation: held-out world scenes rendered at 8 fps and at 16 / 24 fps (the renderer
  reproduces the base frames at every k-th index exactly), PSNR of the in-between frames made by
  the learned interpolator, flow interpolation and plain blending of the neighbours, against the
  true renders;
- super-resolution: the same scenes at 64x64 and 256x256; PSNR of the learned upscaler, bicubic
  and Lanczos against the true 256x256 render, flicker (kinema.eval.video_metrics.flicker) of
  each, and how far each one's frame-to-frame change is from the truth's;
- watermark: payload read back after the default H.264 export (write_video, crf 23) at 64x64 (2 s
  and 1 s clips) and at 256x256; code bits right before error correction, payload bits right
  after, and clips whose read counts as found (vote agreement above the threshold, every code
  word decodable) with the right payload.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HELD_OUT_SEED = 31_415_926  # not a training stream seed


def psnr_pooled(pred: list[np.ndarray], truth: list[np.ndarray]) -> float:
    mse = np.mean(
        [
            np.mean((p.astype(np.float64) - t.astype(np.float64)) ** 2)
            for p, t in zip(pred, truth, strict=True)
        ]
    )
    return round(float(10 * np.log10(255**2 / max(mse, 1e-10))), 2)


def stages(steps: int, repeats: int) -> dict:
    import kinema
    from kinema.production import ExportSettings, ProductionSettings, export, produce
    from kinema.production import provenance as prov
    from kinema.production.export import _write_video, file_metadata
    from kinema.production.produce import Stages, prepare_prompt
    from kinema.production.verify import verify

    prompt = "a red circle"  # expanded to a full Shapes caption
    settings = ProductionSettings(fps=24, width=256, height=256, seed=1)
    expanded = prepare_prompt(prompt, settings, Stages()).expanded
    pipe = kinema.load()
    pipe(expanded, steps=2)  # warm up
    base_runs, produce_runs, videos = [], [], []
    for _ in range(repeats):  # alternated, so that drift on this shared machine hits both alike
        t = time.perf_counter()
        pipe(expanded, steps=steps, seed=1)
        base_runs.append(time.perf_counter() - t)
        t = time.perf_counter()
        videos.append(produce(pipe, prompt, settings, steps=steps))
        produce_runs.append(time.perf_counter() - t)
    base_alone, produce_s = float(np.median(base_runs)), float(np.median(produce_runs))
    video = videos[-1]
    names = ("prompt", "generate", "interpolate", "upscale", "safety", "watermark", "quality")
    out: dict = {
        "steps": steps,
        "repeats": repeats,
        "base_generation_alone_s (median)": round(base_alone, 2),
        "base_runs_s": [round(x, 2) for x in base_runs],
        "produce_stages_s (median)": {
            k: round(float(np.median([v.metadata["timings"][k] for v in videos])), 3) for k in names
        },
    }
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ.setdefault("KINEMA_HOME", str(tmp / "home"))
        identity = prov.signing_identity()  # made now if needed, outside the timings
        t = time.perf_counter()
        _write_video(video, tmp / "plain.mp4", file_metadata(video.metadata), 23)
        mp4_s = time.perf_counter() - t
        t = time.perf_counter()
        manifest = prov.build_manifest(video.metadata, "clip.mp4", identity.development)
        prov.sign_mp4(tmp / "plain.mp4", tmp / "signed.mp4", manifest, identity)
        c2pa_s = time.perf_counter() - t
        t = time.perf_counter()
        files = export(video, tmp / "clip.mp4")  # mp4 + C2PA + thumbnail, spritesheet, report
        export_s = time.perf_counter() - t
        t = time.perf_counter()
        export(video, tmp / "extra.gif", ExportSettings(formats=("webm",), c2pa=False))
        gif_webm_s = time.perf_counter() - t
        t = time.perf_counter()
        checked = verify(files["mp4"], Path(identity.source) / "root.pem")
        verify_s = time.perf_counter() - t
    post = sum(v for k, v in out["produce_stages_s (median)"].items() if k != "generate")
    out["export_s"] = {
        "mp4_h264": round(mp4_s, 3),
        "c2pa_sign": round(c2pa_s, 3),
        "default_export_total (mp4+c2pa+thumbnail+spritesheet+report)": round(export_s, 3),
        "gif_and_webm_extra": round(gif_webm_s, 3),
    }
    out["produce_total_s (median)"] = round(produce_s, 2)
    out["produce_plus_default_export_s"] = round(produce_s + export_s, 2)
    out["ratio_to_base_generation"] = round((produce_s + export_s) / base_alone, 2)
    out["post_stages_s (all but generate, plus default export)"] = round(post + export_s, 2)
    out["verify_s"] = round(verify_s, 3)
    out["verified"] = checked.ok
    return out


def world_clips(count: int, size: int, frames: int, fps: float):
    from kinema.world import random_scene, render

    rng = np.random.default_rng(HELD_OUT_SEED)
    for _ in range(count):
        scene = random_scene(rng, (frames - 1) / fps, 64, 64)
        yield scene, render(scene, size, size, frames, fps)


def interpolation(clips: int, weights: str = "learned") -> dict:
    from kinema.production.interpolate import make_interpolator, retime
    from kinema.world import render

    interps = [make_interpolator(n) for n in (weights, "flow", "blend")]
    out = {"learned_weights": weights}
    for k in (2, 3):
        preds: dict[str, list] = {i.name: [] for i in interps}
        truths, seconds = [], {i.name: 0.0 for i in interps}
        for scene, base in world_clips(clips, 64, 17, 8):
            truth = render(scene, 64, 64, 16 * k + 1, 8 * k)
            assert np.array_equal(truth[::k], base)
            between = np.arange(len(truth)) % k != 0
            truths.append(truth[between])
            for interp in interps:
                t = time.perf_counter()
                made = retime(base, 8, 8 * k, interp)
                seconds[interp.name] += time.perf_counter() - t
                preds[interp.name].append(made[between])
        out[f"8_to_{8 * k}_fps"] = {
            **{f"psnr_{n}": psnr_pooled(p, truths) for n, p in preds.items()},
            **{f"{n}_s_per_clip": round(s / clips, 3) for n, s in seconds.items()},
        }
    out["clips"] = clips
    out["note"] = "64x64, 17 base frames per clip; PSNR pooled over all in-between frames"
    return out


def temporal_error(made: np.ndarray, truth: np.ndarray) -> float:
    """Mean |frame-to-frame change of made - that of truth|, 0..255: flicker that is not motion."""
    d_made = np.diff(made.astype(np.int16), axis=0)
    d_truth = np.diff(truth.astype(np.int16), axis=0)
    return float(np.abs(d_made - d_truth).mean())


def super_resolution(clips: int, weights: str = "learned") -> dict:
    from kinema.eval.video_metrics import flicker
    from kinema.production.upscale import make_upscaler
    from kinema.world import render

    ups = {u.name: u for u in (make_upscaler(n) for n in (weights, "bicubic", "lanczos"))}
    preds: dict[str, list] = {n: [] for n in ups}
    truths, flick = [], {n: [] for n in (*ups, "truth_256")}
    excess = {n: [] for n in ups}
    seconds = dict.fromkeys(ups, 0.0)
    for scene, low in world_clips(clips, 64, 17, 8):
        truth = render(scene, 256, 256, 17, 8)
        truths.append(truth)
        flick["truth_256"].append(flicker(truth))
        for name, up in ups.items():
            t = time.perf_counter()
            made = up(low, 256, 256)
            seconds[name] += time.perf_counter() - t
            preds[name].append(made)
            flick[name].append(flicker(made))
            excess[name].append(temporal_error(made, truth))
    return {
        "learned_weights": weights,
        **{f"psnr_{n}": psnr_pooled(preds[n], truths) for n in ups},
        **{f"flicker_{n}": round(float(np.mean(v)), 3) for n, v in flick.items()},
        **{f"temporal_error_{n}": round(float(np.mean(v)), 3) for n, v in excess.items()},
        **{f"{n}_s_per_clip": round(s / clips, 3) for n, s in seconds.items()},
        "clips": clips,
        "note": "64x64 -> 256x256, 17 frames at 8 fps; flicker: mean |consecutive difference| "
        "(VBench); temporal_error: mean |its difference from the truth's| (flicker not from "
        "motion)",
    }


def watermark(clips: int) -> dict:
    from kinema.io.video import read_video, write_video
    from kinema.production import watermark as wm

    rng = np.random.default_rng(HELD_OUT_SEED + 1)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for size, frames, fps in ((64, 17, 8), (64, 9, 8), (256, 49, 24)):
            n = clips if size == 64 else max(2, clips // 4)
            code_right = payload_right = exact = 0
            quality = []
            for i, (_, clip) in enumerate(world_clips(n, size, frames, fps)):
                payload = int(rng.integers(0, 2**32))
                marked = wm.embed(clip, payload)
                quality.append(10 * np.log10(255**2 / np.mean((marked.astype(float) - clip) ** 2)))
                path = write_video(Path(tmp) / f"{i}.mp4", marked, fps)  # the default export
                reading = wm.read(read_video(path)[0])
                code_right += int(np.sum(np.array(reading.code_bits) == wm.encode_payload(payload)))
                got = wm.decode_code(np.array(reading.code_bits, np.uint8))[0]  # found or not
                payload_right += sum(((got >> b) & 1) == ((payload >> b) & 1) for b in range(32))
                exact += reading.found and reading.payload == payload
            out[f"{size}x{size}x{frames}"] = {
                "code_bit_accuracy_before_correction": round(code_right / (64 * n), 4),
                "payload_bit_accuracy": round(payload_right / (32 * n), 4),
                "found_with_the_right_payload": f"{exact}/{n}",
                "psnr_db": round(float(np.mean(quality)), 1),
            }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clips", type=int, default=24)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-stages", action="store_true")
    parser.add_argument(
        "--only", choices=("stages", "interpolation", "super_resolution", "watermark")
    )
    parser.add_argument("--interp", default="learned", help="interp.safetensors to measure")
    parser.add_argument("--sr", default="learned", help="sr.safetensors to measure")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    report = {"threads": args.threads}
    runs = {
        "stages": lambda: stages(args.steps, args.repeats),
        "interpolation": lambda: interpolation(args.clips, args.interp),
        "super_resolution": lambda: super_resolution(args.clips, args.sr),
        "watermark": lambda: watermark(args.clips),
    }
    for name, run in runs.items():
        if (args.only in (None, name)) and not (name == "stages" and args.skip_stages):
            report[name] = run()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
