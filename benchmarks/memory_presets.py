"""Which model, size and length fit in how much accelerator memory, from kinema plan's memory
estimate (kinema/pipeline/plan.py: weights + the peak of live tensors, traced on the meta
device), printed as JSON and as the README's Markdown table. Estimates, not measurements.

    python benchmarks/memory_presets.py [--sizes 8,16,24,80]

Per case, three ways to run: float32 weights; the transformer in bfloat16 (--dtype bfloat16);
and bfloat16 with --offload, where the device holds one component at a time (text encoder, then
transformer, then VAE) with that stage's activations. Activations are counted in float32, an
upper bound for a bfloat16 run; the text encoder (umT5-xxl for Wan) is counted in bfloat16,
the dtype of its file; CUDA's own context (about 0.5 GB) is not counted.
"""

from __future__ import annotations

import argparse
import json

import torch

from kinema.dit.transformer import DiTConfig
from kinema.pipeline.plan import _meta_models, _trace_decode, _trace_step, parameter_bytes
from kinema.pipeline.text_to_video import GenerationSettings
from kinema.vae.causal_vae import VAEConfig, latent_frames
from kinema.vae.wan_vae import WanVAEConfig

WAN = dict(text_dim=4096, freq_dim=256, text_len=512)
MODELS = {
    "kinema-tiny": (DiTConfig(micro_conditioning=True), VAEConfig(), 22.7e6 * 4),  # MiniLM fp32
    "Wan2.1-T2V-1.3B": (DiTConfig(dim=1536, ffn_dim=8960, heads=12, layers=30, **WAN),
                        WanVAEConfig(), None),
    "Wan2.1-T2V-14B": (DiTConfig(dim=5120, ffn_dim=13824, heads=40, layers=40, **WAN),
                       WanVAEConfig(), None),
}  # fmt: skip
CASES = [
    ("kinema-tiny", 64, 64, 17),
    ("kinema-tiny", 256, 256, 33),
    ("Wan2.1-T2V-1.3B", 832, 480, 33),
    ("Wan2.1-T2V-1.3B", 832, 480, 81),
    ("Wan2.1-T2V-14B", 832, 480, 81),
    ("Wan2.1-T2V-14B", 1280, 720, 81),
]
TEXT_TOKENS = 128  # prompt and negative prompt, compacted (Wan's zero padding is one key)


def umt5_xxl_bytes() -> int:
    """umT5-xxl's encoder (Wan's text encoder) in bfloat16, counted on the meta device."""
    from transformers import UMT5Config, UMT5EncoderModel

    config = UMT5Config(vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24,
                        num_heads=64, feed_forward_proj="gated-gelu")  # fmt: skip
    with torch.device("meta"):
        model = UMT5EncoderModel(config)
    return sum(p.numel() for p in model.parameters()) * 2


def estimate(model: str, width: int, height: int, frames: int, text_bytes: int) -> dict:
    dit_cfg, vae_cfg, own_text = MODELS[model]
    text_bytes = own_text or text_bytes
    s = GenerationSettings(width=width, height=height, num_frames=frames)
    sf = vae_cfg.spatial_factor
    latent = (1, vae_cfg.latent_channels, latent_frames(frames, vae_cfg.temporal_factor),
              height // sf, width // sf)  # fmt: skip
    dit, vae = _meta_models(dit_cfg, vae_cfg)
    step = _trace_step(dit_cfg, vae_cfg, latent, TEXT_TOKENS, s.guidance, None, None)
    decode = _trace_decode(dit_cfg, vae_cfg, latent)
    dit32, vae_bytes = parameter_bytes(dit), parameter_bytes(vae)
    dit16 = dit32 // 2
    gib = 2**30
    text_act = 2 * TEXT_TOKENS * 4 * 4096 * 4  # the encoder's states, a few of them
    return {
        "model": model, "size": f"{width}x{height}", "frames": frames,
        "tokens": latent[2] * (latent[3] // 2) * (latent[4] // 2),
        "weights_gib": {"text_encoder": round(text_bytes / gib, 2),
                        "transformer_fp32": round(dit32 / gib, 2), "vae": round(vae_bytes / gib, 2)},
        "activations_gib": {"step": round(step.peak_bytes / gib, 2),
                            "decode": round(decode.peak_bytes / gib, 2)},
        "peak_gib": {
            "float32": round((text_bytes + dit32 + vae_bytes + max(step.peak_bytes, decode.peak_bytes)) / gib, 1),
            "bfloat16": round((text_bytes + dit16 + vae_bytes + max(step.peak_bytes, decode.peak_bytes)) / gib, 1),
            "bfloat16_offload": round(max(text_bytes + text_act, dit16 + step.peak_bytes,
                                          vae_bytes + decode.peak_bytes) / gib, 1),
        },
    }  # fmt: skip


def table(rows: list[dict], sizes: list[int]) -> str:
    head = "| model | size x frames | tokens | " + " | ".join(f"{g} GB" for g in sizes) + " |"
    lines = [head, "|" + "---|" * (3 + len(sizes))]
    for r in rows:
        cells = []
        for g in sizes:
            fits = [k for k, v in r["peak_gib"].items() if v * 2**30 <= g * 1e9]
            label = {"float32": "fp32", "bfloat16": "bf16", "bfloat16_offload": "bf16 + offload"}
            cells.append(label[fits[0]] if fits else "no")
        lines.append(f"| {r['model']} | {r['size']} x {r['frames']} | {r['tokens']:,} | " + " | ".join(cells) + " |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="8,16,24,80", help="memory sizes in GB")
    args = parser.parse_args()
    sizes = [int(v) for v in args.sizes.split(",")]
    text_bytes = umt5_xxl_bytes()
    rows = [estimate(*case, text_bytes) for case in CASES]
    print(json.dumps(rows, indent=1))
    print(table(rows, sizes))


if __name__ == "__main__":
    main()
