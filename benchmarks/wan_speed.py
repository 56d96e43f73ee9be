"""kinema's Wan2.1 transformer and VAE against diffusers' on the same configs and weights, in
one run, printed as JSON.

    python benchmarks/wan_speed.py [--threads 1] [--repeats 5] [--cases tiny,small,wan1.3b-4l]

Per transformer case (random weights: diffusers' WanTransformer3DModel, converted into kinema's
DiT, outputs compared):
- diffusers_cfg_batch: one forward of the CFG batch (2 clips), the text zero-padded to 512
  tokens as WanPipeline pads it;
- diffusers_pipeline_step: what a WanPipeline step runs, two forwards of 1 clip (cond, uncond);
- kinema_forward: one forward of the CFG batch from the raw text states and mask;
- kinema_step: what a step of kinema's sampler runs, the same forward with the text prepared
  once per generation (DiT.prepare_context: embedding, keys and values of every block);
- peak bytes of the tensors alive at once during one forward (kinema/pipeline/plan.py's
  LiveBytes; weights, inputs and the prepared text not counted);
- model FLOPs of one forward with Wan's 512 text tokens (kinema/pipeline/plan.py dit_flops) over
  the time, and a plain matmul of the MLP's size measured in the same run.
Per VAE case: decoding latents with AutoencoderKLWan.decode against kinema's WanVAE.decode_chunked.
Times are medians over interleaved rounds (after a warm-up round), so that load elsewhere on a
shared machine hits both alike; the ratios are the figures to read.
"""

from __future__ import annotations

import argparse
import json
import os
import platform

import torch
from generate_speed import matmul_flops_per_s  # benchmarks/: the same peer measurement

from kinema.convert.wan import (
    dit_config_from_diffusers,
    dit_key_to_diffusers,
    rename,
    vae_config_from_diffusers,
    vae_key_to_diffusers,
)
from kinema.dit.transformer import DiT
from kinema.pipeline.plan import LiveBytes, _typical_seconds, dit_flops
from kinema.vae.wan_vae import WanVAE

# diffusers WanTransformer3DModel configs; latent (F, H, W) of the clip
TRANSFORMERS = {
    "tiny": (dict(num_attention_heads=2, attention_head_dim=16, text_dim=32, freq_dim=32,
                  ffn_dim=48, num_layers=2), (3, 8, 8), "64x64, 9 frames"),
    "small": (dict(num_attention_heads=4, attention_head_dim=64, text_dim=384, freq_dim=256,
                   ffn_dim=1024, num_layers=4), (5, 16, 16), "128x128, 17 frames"),
    # Wan2.1-T2V-1.3B's block, width and text encoder size, 4 of its 30 layers
    "wan1.3b-4l": (dict(num_attention_heads=12, attention_head_dim=128, text_dim=4096,
                        freq_dim=256, ffn_dim=8960, num_layers=4), (3, 16, 16), "128x128, 9 frames"),
}  # fmt: skip
VAES = {
    "vae-tiny": (dict(base_dim=8, dim_mult=[1, 2, 4, 4]), (3, 8, 8), "64x64, 9 frames"),
    "vae-wan2.1": (dict(), (3, 8, 8), "64x64, 9 frames"),  # Wan2.1's own config
}


def peak_bytes(fn) -> int:
    with torch.inference_mode(), LiveBytes() as live:
        fn()
    return live.peak


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max())


@torch.inference_mode()
def transformer_case(name: str, repeats: int, prompt_tokens: int, negative_tokens: int) -> dict:
    from diffusers import WanTransformer3DModel

    config, latent, clip = TRANSFORMERS[name]
    torch.manual_seed(0)
    ref = WanTransformer3DModel(in_channels=16, out_channels=16, **config).eval()
    dit = DiT(dit_config_from_diffusers(dict(ref.config))).eval()
    dit.load_state_dict(rename(ref.state_dict(), dit.state_dict(), dit_key_to_diffusers, "ref"))
    x, t = torch.randn(2, 16, *latent), torch.tensor([0.7, 0.7])
    length = max(prompt_tokens, negative_tokens)
    states = torch.randn(2, length, config["text_dim"])
    mask = torch.zeros(2, length, dtype=torch.bool)
    mask[0, :prompt_tokens], mask[1, :negative_tokens] = True, True
    padded = torch.zeros(2, 512, config["text_dim"])  # WanPipeline's zero padding
    padded[:, :length] = states * mask[..., None]
    prepared = dit.prepare_context(states, mask)

    fns = {
        "diffusers_cfg_batch": lambda: ref(x, t * 1000, padded, return_dict=False)[0],
        "diffusers_pipeline_step": lambda: [
            ref(x[i : i + 1], t[i : i + 1] * 1000, padded[i : i + 1], return_dict=False)[0]
            for i in range(2)
        ],
        "kinema_forward": lambda: dit(x, t, states, mask),
        "kinema_step": lambda: dit(x, t, prepared),
    }
    diff = max_diff(fns["kinema_step"](), fns["diffusers_cfg_batch"]())
    seconds = _typical_seconds(fns, repeats)
    cfg = dit.cfg
    grid = tuple(n // p for n, p in zip(latent, cfg.patch, strict=True))
    flops, _ = dit_flops(cfg, 2, grid, 512)
    tokens = 2 * grid[0] * grid[1] * grid[2]
    peer = matmul_flops_per_s(tokens, cfg.dim, cfg.ffn_dim)
    best_diffusers = min(seconds["diffusers_cfg_batch"], seconds["diffusers_pipeline_step"])
    return {
        "config": {**config, "latent_fhw": latent, "clip": clip, "tokens_per_clip": tokens // 2,
                   "prompt_tokens": prompt_tokens, "negative_tokens": negative_tokens},
        "max_abs_diff_vs_diffusers": diff,
        "ms": {k: round(v * 1e3, 2) for k, v in seconds.items()},
        "speedup_step_vs_diffusers_cfg_batch": round(seconds["diffusers_cfg_batch"] / seconds["kinema_step"], 2),
        "speedup_step_vs_diffusers_best": round(best_diffusers / seconds["kinema_step"], 2),
        "speedup_forward_vs_diffusers_cfg_batch": round(seconds["diffusers_cfg_batch"] / seconds["kinema_forward"], 2),
        "peak_activation_mib": {
            k: round(peak_bytes(fns[k]) / 2**20, 2)
            for k in ("diffusers_cfg_batch", "kinema_forward", "kinema_step")
        },
        "model_gflop_per_forward_512_text_tokens": round(flops / 1e9, 3),
        "effective_gflop_per_s": {
            k: round(flops / seconds[k] / 1e9, 1)
            for k in ("diffusers_cfg_batch", "kinema_forward", "kinema_step")
        },
        "matmul_peer_gflop_per_s": round(peer / 1e9, 1),
    }  # fmt: skip


@torch.inference_mode()
def vae_case(name: str, repeats: int) -> dict:
    from diffusers import AutoencoderKLWan

    config, latent, clip = VAES[name]
    torch.manual_seed(0)
    ref = AutoencoderKLWan(**config).eval()
    cfg = vae_config_from_diffusers(dict(ref.config))
    vae = WanVAE(cfg).eval()
    to_diffusers = lambda k: vae_key_to_diffusers(k, cfg)  # noqa: E731
    vae.load_state_dict(rename(ref.state_dict(), vae.state_dict(), to_diffusers, "ref"))
    z = torch.randn(1, 16, *latent)
    fns = {
        "diffusers_decode": lambda: ref.decode(z).sample,
        "kinema_decode": lambda: vae.decode_chunked(z),
    }
    diff = max_diff(fns["kinema_decode"](), fns["diffusers_decode"]())
    seconds = _typical_seconds(fns, repeats)
    return {
        "config": {**config, "latent_fhw": latent, "clip": clip},
        "max_abs_diff_vs_diffusers": diff,
        "ms": {k: round(v * 1e3, 1) for k, v in seconds.items()},
        "speedup_vs_diffusers": round(seconds["diffusers_decode"] / seconds["kinema_decode"], 2),
        "peak_activation_mib": {k: round(peak_bytes(f) / 2**20, 2) for k, f in fns.items()},
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--vae-repeats", type=int, default=2)
    parser.add_argument("--cases", default=",".join([*TRANSFORMERS, *VAES]))
    parser.add_argument("--prompt-tokens", type=int, default=24)
    parser.add_argument("--negative-tokens", type=int, default=60)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import diffusers

    load_before = os.getloadavg()
    results = {}
    for name in args.cases.split(","):
        if name in TRANSFORMERS:
            results[name] = transformer_case(
                name, args.repeats, args.prompt_tokens, args.negative_tokens
            )
        elif name in VAES:
            results[name] = vae_case(name, args.vae_repeats)
        else:
            raise SystemExit(f"unknown case {name!r}; known: {', '.join([*TRANSFORMERS, *VAES])}")
    print(json.dumps({
        "torch_threads": torch.get_num_threads(),
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "repeats": args.repeats,
        "cases": results,
    }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
