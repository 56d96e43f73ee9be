"""The training loop shared by every learned part: DDP, AdamW with warm-up, EMA, gradient
clipping, checkpoint and resume, a JSONL log, a loss plot and throughput. What is learned and
how its loss is computed is the task's business (see vae_task.py, dit_task.py)."""

from __future__ import annotations

import json
import math
import shlex
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from kinema.train.distributed import DistInfo, all_mean, barrier, weight_spread
from kinema.train.ema import EMA


@dataclass(frozen=True)
class TrainConfig:
    out_dir: str
    steps: int = 1000
    minutes: float | None = None  # stop early after this much wall time (then save)
    lr: float = 3e-4
    warmup: int = 100
    weight_decay: float = 0.01
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    save_every: int = 200
    log_every: int = 10
    seed: int = 0
    # "bf16": mixed precision (autocast; weights, optimizer and EMA stay float32); "fp32"
    precision: str = "fp32"

    def __post_init__(self):
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {self.precision!r}")


class Task(Protocol):
    name: str
    model: nn.Module

    def batches(self, info: DistInfo, seed: int) -> Iterator: ...

    def loss(self, model: nn.Module, batch) -> tuple[torch.Tensor, dict[str, float]]: ...

    def samples_in(self, batch) -> int: ...

    def export(self, model: nn.Module, out_dir: Path) -> Path: ...


def _lr_at(step: int, cfg: TrainConfig, elapsed_minutes: float = 0.0) -> float:
    """Linear warm-up, then cosine decay to 10%. With a time budget the decay follows whichever
    of steps and minutes runs out first, so a run stopped by the clock ends annealed."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(cfg.steps - cfg.warmup, 1)
    if cfg.minutes:
        progress = max(progress, elapsed_minutes / cfg.minutes)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def plot_log(log_path: Path, png_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    if not rows:
        return
    keys = [k for k in rows[0] if k not in ("step", "lr", "seconds", "samples_per_s")]
    fig, axes = plt.subplots(1, len(keys), figsize=(4.5 * len(keys), 3.2), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        ax.plot([r["step"] for r in rows], [r[key] for r in rows])
        ax.set_title(key)
        ax.set_xlabel("step")
        if key.startswith("loss"):
            ax.set_yscale("log")
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)


def native_bf16(device: torch.device) -> bool:
    """Whether bfloat16 matmuls run natively here: a CUDA GPU that has them, or a CPU with
    AVX512-BF16 / AMX (oneDNN), where mixed-precision training is about 1.5x faster for
    kinema-tiny's transformer; elsewhere bfloat16 is emulated and slower than float32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and (
        torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    )


def write_config(path: Path, cfg: TrainConfig, task: str, step: int) -> None:
    """config.json: this sitting's settings, and the command line of every sitting so far with
    the step it started at, so a run resumed with other arguments (a recipe changed part-way)
    keeps its exact recipe."""
    history = []
    if step > 0 and path.exists():
        try:
            history = json.loads(path.read_text()).get("history", [])
        except (OSError, ValueError, AttributeError):
            history = []  # a damaged config.json loses the past commands, not the run
    # the program's name, not its path on this machine
    program = "kinema" if "kinema" in sys.argv[0] else Path(sys.argv[0]).name
    history.append({"step": step, "command": shlex.join([program, *sys.argv[1:]])})
    path.write_text(json.dumps({"train": asdict(cfg), "task": task, "history": history}, indent=1))


def train(task: Task, cfg: TrainConfig, info: DistInfo, progress: bool = True) -> Path:
    """Train task.model; returns the path of the exported (EMA) weights."""
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed + info.rank)
    model = task.model.to(info.device)
    ema = EMA(model, cfg.ema_decay)
    opt = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=cfg.weight_decay
    )
    step, elapsed = 0, 0.0
    state_path = out / "state.pt"
    if state_path.exists():  # resume
        state = torch.load(state_path, map_location=info.device, weights_only=False)
        model.load_state_dict(state["model"])
        ema.model.load_state_dict(state["ema"])
        opt.load_state_dict(state["opt"])
        step = state["step"]
        elapsed = state.get("elapsed", 0.0)  # --minutes counts the whole run, across resumes
        if info.is_main:
            print(f"resumed {task.name} from {state_path} at step {step}")
    wrapped = DistributedDataParallel(model) if info.enabled else model
    if info.is_main:
        write_config(out / "config.json", cfg, task.name, step)
    # a resumed run continues with fresh batches rather than replaying the ones it has seen
    batches = task.batches(info, cfg.seed * 1_000_003 + step)
    log = (out / "log.jsonl").open("a")
    start = time.perf_counter() - elapsed
    window_start, samples = time.perf_counter(), 0
    bar = None
    if progress and info.is_main:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, initial=step, desc=f"train {task.name}", dynamic_ncols=True)

    def save() -> None:
        if info.is_main:
            tmp = state_path.with_suffix(".tmp")
            torch.save(
                {
                    "model": model.state_dict(),
                    "ema": ema.model.state_dict(),
                    "opt": opt.state_dict(),
                    "step": step,
                    "elapsed": time.perf_counter() - start,
                },
                tmp,
            )
            tmp.replace(state_path)  # atomic: a crash mid-save keeps the previous checkpoint
            task.export(ema.model, out)
            plot_log(out / "log.jsonl", out / "loss.png")
        barrier(info)

    while step < cfg.steps:
        lr = _lr_at(step, cfg, (time.perf_counter() - start) / 60)
        for group in opt.param_groups:
            group["lr"] = lr
        batch = next(batches)
        with torch.autocast(info.device.type, torch.bfloat16, enabled=cfg.precision == "bf16"):
            loss, logs = task.loss(wrapped, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        ema.update(model, step)
        step += 1
        samples += task.samples_in(batch) * info.world_size
        if step % cfg.log_every == 0 or step == cfg.steps:
            now = time.perf_counter()
            row = {"step": step, "lr": lr, "seconds": round(now - start, 1)}
            row.update({k: all_mean(v, info) for k, v in logs.items()})
            row["grad_norm"] = float(grad_norm)
            row["samples_per_s"] = round(samples / (now - window_start), 2)
            window_start, samples = now, 0
            if info.is_main:
                log.write(json.dumps(row) + "\n")
                log.flush()
                if bar is not None:
                    bar.set_postfix(
                        {k: f"{v:.4g}" for k, v in row.items() if k.startswith("loss")}
                        | {"samples/s": row["samples_per_s"]}
                    )
        if bar is not None:
            bar.update(1)
        out_of_time = cfg.minutes is not None and time.perf_counter() - start > 60 * cfg.minutes
        if info.enabled:  # every rank must agree to stop at the same step
            out_of_time = all_mean(float(out_of_time), info) > 0
        if step % cfg.save_every == 0 or step == cfg.steps or out_of_time:
            save()
        if out_of_time:
            break
    if bar is not None:
        bar.close()
    log.close()
    spread = weight_spread(model, info)
    if info.is_main:
        summary = {"steps": step, "world_size": info.world_size, "ranks_max_weight_diff": spread,
                   "seconds": round(time.perf_counter() - start, 1)}  # fmt: skip
        (out / "summary.json").write_text(json.dumps(summary, indent=1))
        print(
            f"{task.name}: {step} steps on {info.world_size} process(es) in {summary['seconds']} s"
        )
    return out
