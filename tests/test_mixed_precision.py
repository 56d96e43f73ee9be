"""Mixed-precision (bf16 autocast) training of the transformer: the fp32 islands and the residual
stream stay float32, the prediction stays close to the float32 one, and training still learns."""

import json

import pytest
import torch
from test_train import word_encoder

from kinema.dit.transformer import DiT, DiTConfig
from kinema.train.distributed import DistInfo
from kinema.train.dit_task import DiTTask
from kinema.train.trainer import TrainConfig, train
from kinema.vae.causal_vae import CausalVAE, VAEConfig

TINY = DiTConfig(
    in_channels=4, out_channels=4, dim=32, ffn_dim=64, heads=2, layers=2, text_dim=8,
    micro_conditioning=True, pooled_text=True,
)  # fmt: skip


def perturbed(cfg: DiTConfig) -> DiT:
    """A tiny DiT with every weight moved off its (partly zero) initialisation."""
    torch.manual_seed(0)
    model = DiT(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


def test_autocast_keeps_the_fp32_islands_and_residual_stream():
    model = perturbed(TINY)
    x, t = torch.randn(2, 4, 3, 8, 8), torch.rand(2, 3)
    ctx, mask = torch.randn(2, 5, 8), torch.ones(2, 5, dtype=torch.bool)
    motion, fps = torch.tensor([40.0, 200.0]), torch.tensor([8.0, 4.0])
    seen: dict[str, torch.dtype] = {}

    def record(name: str):
        def hook(module, args, output=None):
            seen.setdefault(name, (args[0] if output is None else output).dtype)

        return hook

    hooks = [
        model.time_projection.register_forward_hook(record("modulation")),
        model.blocks[1].register_forward_pre_hook(record("residual")),
        model.blocks[0].ffn[0].register_forward_hook(record("mlp")),
    ]
    with torch.no_grad():
        reference = model(x, t, ctx, mask, motion, fps)
        seen.clear()
        with torch.autocast("cpu", torch.bfloat16):
            mixed = model(x, t, ctx, mask, motion, fps)
    for h in hooks:
        h.remove()
    assert seen == {"modulation": torch.float32, "residual": torch.float32, "mlp": torch.bfloat16}
    assert mixed.dtype == torch.float32
    error = (mixed - reference).norm() / reference.norm()
    assert 0 < error < 0.03, error  # bf16 matmuls ran, and their error is small


def test_bf16_training_learns_and_keeps_float32_weights(tmp_path):
    vae = CausalVAE(VAEConfig(latent_channels=4, channels=(8, 16, 16), temporal_blocks=1))
    task = DiTTask(vae, word_encoder, TINY, batch_size=4, pool_size=40, reuse=4)
    cfg = TrainConfig(str(tmp_path), steps=60, lr=3e-3, warmup=5, save_every=1000,
                      log_every=5, precision="bf16")  # fmt: skip
    train(task, cfg, DistInfo(), progress=False)
    rows = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    first, last = rows[0]["loss"], sum(r["loss"] for r in rows[-3:]) / 3
    assert last < 0.8 * first, (first, last)
    assert all(p.dtype == torch.float32 for p in task.model.parameters())


def test_precision_is_checked():
    with pytest.raises(ValueError, match="precision"):
        TrainConfig("out", precision="fp16")
