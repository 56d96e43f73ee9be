"""VAE reconstruction on held-out world clips, and decode memory against clip length (JSON).

    python benchmarks/vae_quality.py [--vae kinema/assets/kinema-tiny/vae.safetensors] [--clips 64]

Held-out clips come from a seed the training stream never uses. Peak memory of chunked decoding
is measured in a fresh process per length (max resident set size), so lengths do not share it.
On the 17-frame clips, and on ShapesBench's own ground-truth clips (its suite's prompts, seed 0),
it also reports flicker and warping error of the clips and of their reconstructions: a generated
clip passes through the same decoder, so the ratio to the truth is a floor under any diffusion
model's. With --pool (a held-out latent pool, tools/latent_pool.py --seed S), it decodes a
diffusion model's own latents and scores them against the clips they came from: what a decoder
fine-tuned on such pairs (kinema train vae --latent-pool) is for.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from kinema.eval.generators import groundtruth
from kinema.eval.shapesbench import BenchSettings, load_suite
from kinema.eval.video_metrics import flicker, warping_error
from kinema.io.frames import to_frames, to_tensor
from kinema.models import MODELS, load_vae
from kinema.train.latent_pool import load_latent_pool
from kinema.train.vae_task import psnr
from kinema.world.dataset import Bucket, ShapesDataset

HELD_OUT_SEED = 987_654_321


def frames_of(video: torch.Tensor) -> np.ndarray:
    return to_frames(video).numpy()


def temporal_report(pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """Mean flicker and warping error of clips and of their reconstructions, and the ratios."""
    out = {}
    for name, metric in (("flicker", flicker), ("warping_error", warping_error)):
        truth = float(np.mean([metric(clip) for clip, _ in pairs]))
        recon = float(np.mean([metric(rec) for _, rec in pairs]))
        out[name] = {"truth": truth, "recon": recon, "ratio": round(recon / truth, 3)}
    return out


def pool_report(vae, pool) -> dict:
    """PSNR, flicker and warping error of a latent pool's decodes against its clips."""
    values, pairs = [], []
    with torch.inference_mode():
        for frames, latents in zip(pool.video, pool.latents, strict=True):
            recon = vae.decode_chunked(vae.from_model(latents[None].float()))
            values.append(psnr(recon, to_tensor(frames.numpy())[None]))
            pairs.append((frames.numpy(), frames_of(recon[0])))
    return {"clips": len(pool), "psnr": round(float(np.mean(values)), 2),
            **temporal_report(pairs)}  # fmt: skip


def decode_peak_mb(vae_path: str, latent_frames: int) -> float:
    code = (
        "import resource, torch; from kinema.models import load_vae;"
        f"vae = load_vae({vae_path!r}); z = torch.randn(1, vae.cfg.latent_channels, {latent_frames}, 16, 16);"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss;"
        "torch.inference_mode()(vae.decode_chunked)(z);"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base)"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--vae", default=str(MODELS["kinema-tiny"] / "vae.safetensors"))
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--pool", type=Path, help="a held-out latent pool to decode and score")
    args = parser.parse_args()
    vae = load_vae(args.vae)
    report = {"vae": args.vae, "clips": args.clips}
    for bucket in (Bucket(64, 64, 17), Bucket(64, 64, 1), Bucket(96, 64, 33)):
        data = iter(ShapesDataset([bucket], 8, seed=HELD_OUT_SEED, paraphrase=False))
        values, pairs = [], []
        with torch.inference_mode():
            for _ in range(max(1, args.clips // 8)):
                video = next(data).video
                mean, _ = vae.encode(video)
                recon = vae.decode_chunked(mean)
                values += [psnr(recon[i : i + 1], video[i : i + 1]) for i in range(len(video))]
                if bucket.num_frames == 17:
                    pairs += [
                        (frames_of(v), frames_of(r)) for v, r in zip(video, recon, strict=True)
                    ]
        key = f"psnr_{bucket.width}x{bucket.height}x{bucket.num_frames}"
        report[key] = {"mean": round(sum(values) / len(values), 2), "min": round(min(values), 2)}
        if pairs:
            report[f"temporal_{bucket.width}x{bucket.height}x17"] = temporal_report(pairs)
    pairs = []
    with torch.inference_mode():
        for prompt in load_suite():
            truth = groundtruth(prompt.prompt, 0, BenchSettings())
            video = to_tensor(truth)[None]
            pairs.append((truth, frames_of(vae.decode_chunked(vae.encode(video)[0])[0])))
    report["temporal_shapesbench_truth"] = temporal_report(pairs)
    if args.pool is not None:
        report["generated_latents"] = pool_report(vae, load_latent_pool(args.pool))
    if not args.no_memory:
        report["decode_peak_mb"] = {
            f"{4 * (n - 1) + 1}_frames": round(decode_peak_mb(args.vae, n), 1) for n in (5, 20, 80)
        }
    report["this_process_peak_mb"] = round(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
    )
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
