"""The `kinema` command line: parses, then calls the library. Bad input exits 2 with one line."""

from __future__ import annotations

import contextlib
import json
import random
import sys
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="kinema: text to video.",
)
world_app = typer.Typer(no_args_is_help=True, help="The Shapes world: render, sample, vocabulary.")
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks that judge generated videos.")
app.add_typer(world_app, name="world")
train_app = typer.Typer(no_args_is_help=True, help="Train kinema's models (also under torchrun).")
app.add_typer(bench_app, name="bench")
app.add_typer(train_app, name="train")
console = Console()
err = Console(stderr=True)


class UsageError(Exception):
    """Input the user can fix: printed as one line, exit code 2."""


def parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UsageError(f"size must look like WIDTHxHEIGHT, e.g. 64x64, got {text!r}") from None
    return w, h


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err, transient=False,
    )  # fmt: skip


# ----------------------------------------------------------------------------- generate


def _parse_keyframes(values: list[str]) -> dict[float, Path]:
    """["1.5:b.png", ...] -> {1.5: Path("b.png")}, in the order given, which must be increasing."""
    out: dict[float, Path] = {}
    for v in values:
        sec, sep, path = v.partition(":")
        try:
            t = float(sec)
        except ValueError:
            t = None
        if not sep or not path or t is None:
            raise UsageError(f"--keyframe takes SECONDS:PATH, e.g. 1.5:middle.png, got {v!r}")
        if out and t <= max(out):
            raise UsageError(
                f"keyframes must be given in increasing time: {t:g} s comes after {max(out):g} s"
            )
        out[t] = Path(path)
    return out


def _check_output(output: Path) -> None:
    if output.suffix.lower() not in (".mp4", ".gif", ".webm"):
        raise UsageError(f"output must end in .mp4, .gif or .webm, got {output.name!r}")
    if not output.parent.is_dir():
        raise UsageError(f"the folder {output.parent} does not exist")


def _read_images(paths: dict[str, Path | None]) -> dict:
    """Read every given image up front, so a bad file stops the command before any work."""
    from kinema.io.images import load_image

    return {k: (load_image(p) if p is not None else None) for k, p in paths.items()}


Fit = Annotated[
    str, typer.Option(help="an image of another size: crop (cover), pad (fit, bars) or resize")
]
Motion = Annotated[
    float | None, typer.Option(help="motion strength 0..255 [default: the model chooses]")
]
CacheThreshold = Annotated[
    float | None,
    typer.Option(
        help="step caching: reuse the later transformer blocks while the first block's output "
        "changes less than this (e.g. 0.1) [default: off]"
    ),
]
CacheGuidance = Annotated[
    int | None,
    typer.Option(
        help="step caching: run the unconditional (guidance) branch on every k-th step only, "
        "reusing its difference in between (e.g. 2) [default: 1, off]"
    ),
]
CacheInterval = Annotated[
    int | None,
    typer.Option(
        help="step caching: after the first 35% of the steps run every n-th step in full and "
        "reuse its blocks and guidance in between (3: 1.6x fewer transformer FLOPs at 20 steps); "
        "1 turns it off [default: the model's; kinema-tiny: 3]"
    ),
]
Eta = Annotated[
    float | None,
    typer.Option(
        help="fresh noise in each Euler step: 0 integrates the ODE, 1 is ancestral sampling "
        "[default: the model's; kinema-tiny: 1]"
    ),
]
EtaFrom = Annotated[
    float | None,
    typer.Option(
        help="fresh noise only in steps that start at this flow time or below (1: every step) "
        "[default: the model's; kinema-tiny: 1]"
    ),
]


@app.command("generate")
def generate(
    prompt: Annotated[
        str,
        typer.Argument(help='what to show, e.g. "a red circle moving left on a black background"'),
    ],
    output: Annotated[
        Path, typer.Option("-o", "--output", help="MP4, GIF or WebM to write")
    ] = Path("out.mp4"),
    seconds: Annotated[
        float,
        typer.Option(
            help="clip length (0: one frame, an image; past the model's one window, kinema-tiny's "
            "4 s at 8 fps: a chain of windows)"
        ),
    ] = 2.0,
    fps: Annotated[float, typer.Option(help="frames per second")] = 8.0,
    size: Annotated[str, typer.Option(help="WIDTHxHEIGHT (kinema-tiny: multiples of 8)")] = "64x64",
    steps: Annotated[int | None, typer.Option(help="sampler steps [default: model's]")] = None,
    guidance: Annotated[
        float | None, typer.Option(help="classifier-free guidance scale [default: model's]")
    ] = None,
    shift: Annotated[
        float | None, typer.Option(help="schedule shift: >1 spends more steps at high noise")
    ] = None,
    negative: Annotated[
        str | None, typer.Option(help="negative prompt [default: kinema's]")
    ] = None,
    seed: Annotated[int, typer.Option(help="same seed, same video")] = 0,
    solver: Annotated[str | None, typer.Option(help="euler or heun")] = None,
    eta: Eta = None,
    eta_from: EtaFrom = None,
    model: Annotated[str, typer.Option(help="model name or folder")] = "kinema-tiny",
    image: Annotated[Path | None, typer.Option(help="first frame: image-to-video")] = None,
    last_image: Annotated[Path | None, typer.Option(help="last frame")] = None,
    keyframe: Annotated[
        list[str] | None, typer.Option(help="SECONDS:PATH, an image at that time (repeatable)")
    ] = None,
    fit: Fit = "crop",
    motion: Motion = None,
    image_noise: Annotated[
        float, typer.Option(help="0..0.5: how loosely the given images hold (0: exactly)")
    ] = 0.0,
    hierarchical: Annotated[
        bool,
        typer.Option(
            help="long clips: keyframes at 1 fps first, then the frames between (on "
            "kinema-tiny the keyframes barely move)"
        ),
    ] = False,
    anchor: Annotated[
        bool,
        typer.Option(
            help="long clips: re-anchor every window on the first frame (appearance "
            "from the original; with movers it cost identity on kinema-tiny)"
        ),
    ] = False,
    cache_threshold: CacheThreshold = None,
    cache_guidance_every: CacheGuidance = None,
    cache_interval: CacheInterval = None,
    device: Annotated[str, typer.Option(help="where to run: cpu, cuda, cuda:1, ...")] = "cpu",
    dtype: Annotated[
        str | None, typer.Option(help="transformer weights: float16 or bfloat16 [default: float32]")
    ] = None,
    offload: Annotated[
        bool, typer.Option(help="each component on --device only while it works (CPU: no-op)")
    ] = False,
    vae_tile: Annotated[
        int | None,
        typer.Option(help="decode in spatial tiles of this many latent pixels (large frames)"),
    ] = None,
    # production (kinema/production): the model runs at its base fps and size, then upsampling
    expand: Annotated[bool, typer.Option(help="add motion and scene detail to the prompt")] = True,
    expand_url: Annotated[
        str | None, typer.Option(help="expand with this OpenAI-compatible chat endpoint")
    ] = None,
    expand_model: Annotated[str, typer.Option(help="model name for --expand-url")] = "default",
    policy: Annotated[Path | None, typer.Option(help="safety policy file (YAML or JSON)")] = None,
    interpolator: Annotated[
        str, typer.Option(help="to the target fps: learned, flow, blend or interp.safetensors")
    ] = "learned",
    upscaler: Annotated[
        str,
        typer.Option(help="to the target size: learned, bicubic, lanczos, area or sr.safetensors"),
    ] = "learned",
    watermark: Annotated[
        bool, typer.Option(help="invisible watermark (generation id) on every frame")
    ] = True,
    c2pa: Annotated[bool, typer.Option(help="sign a C2PA provenance manifest into the MP4")] = True,
    provenance_prompt: Annotated[
        str, typer.Option(help="prompt in the manifest and tags: text or hash")
    ] = "text",
    also: Annotated[
        str, typer.Option(help="files besides the video: thumbnail,spritesheet,report,gif,webm,mp4")
    ] = "thumbnail,spritesheet,report",
) -> None:
    """Generate a clip from a prompt, optionally from images (first, last, keyframes)."""
    import time

    start = time.perf_counter()
    from kinema.api import Pipeline, load
    from kinema.pipeline.long_clip import ChainSettings
    from kinema.pipeline.plan import chain_windows

    width, height = parse_size(size)
    from kinema.pipeline.text_to_video import check_prompt
    from kinema.production import ExportSettings, ProductionSettings, base_format, export, produce
    from kinema.production.export import check_export, summary
    from kinema.production.produce import build_stages, prepare_prompt

    check_prompt(prompt)
    _check_output(output)
    production = ProductionSettings(fps=fps, width=width, height=height, seconds=seconds, seed=seed,
                                    negative_prompt=negative, expand=expand, watermark=watermark)  # fmt: skip
    production.check()
    stages = build_stages(
        policy, expand_url if expand else None, expand_model, interpolator, upscaler
    )
    exporting = ExportSettings(
        tuple(f.strip() for f in also.split(",") if f.strip()), c2pa, provenance_prompt
    )
    check_export(exporting, output)  # signing credentials too, before any work
    prepared = prepare_prompt(prompt, production, stages)  # refused or expanded before loading
    keyframes = _parse_keyframes(keyframe or [])
    images = _read_images(
        {"image": image, "last_image": last_image, **{k: p for k, p in keyframes.items()}}
    )
    pipe: Pipeline = load(model, device, dtype, offload)
    if vae_tile is not None:
        if vae_tile < 8 or getattr(pipe, "format", None) is not None:
            raise UsageError("--vae-tile takes 8 or more latent pixels, for kinema's own models")
        pipe.t2v.decode_tile = vae_tile
    base_fps, base_width, base_height = base_format(production, getattr(pipe, "base", None))
    settings = pipe.settings(seed, seconds, base_fps, base_width, base_height, negative or "",
                             motion=motion, image_noise=image_noise, steps=steps,
                             guidance=guidance, solver=solver, shift=shift,
                             cache_threshold=cache_threshold,
                             cache_guidance_every=cache_guidance_every,
                             cache_interval=cache_interval, eta=eta, eta_from=eta_from)  # fmt: skip
    keyed = {k: images[k] for k in keyframes}
    pinned, _ = pipe.pinned_images(settings, images["image"], images["last_image"], keyed, fit)
    chain = ChainSettings(anchor=anchor)
    windows = 1
    # a diffusers pipeline makes its clip in one pass; long_mode() refuses, before any work, a
    # clip longer than the window of a model that cannot chain (Wan2.1)
    one_pass = getattr(pipe, "format", None) is not None
    mode = "one window" if one_pass else pipe.long_mode(settings, hierarchical, bool(pinned))
    if mode != "one window":  # hierarchical: one more window, the keyframes'
        clip = max(settings.num_frames, chain.window_frames)
        tf = pipe.t2v.vae.cfg.temporal_factor
        windows = len(chain_windows(clip, chain.window_frames, tf)) + int(mode == "hierarchical")
    loaded = time.perf_counter()
    with _progress() as progress:
        task = progress.add_task("sampling", total=settings.steps * windows)
        done = [0]

        def step(i, n, x):
            done[0] += 1
            progress.update(task, completed=done[0])

        video = produce(
            pipe, prompt, production, stages, callback=step, prepared=prepared, steps=steps,
            guidance=guidance, solver=solver, shift=shift, image=images["image"],
            last_image=images["last_image"], keyframes=keyed,
            fit=fit, motion=motion, image_noise=image_noise, hierarchical=hierarchical,
            chain=chain, cache_threshold=cache_threshold,
            cache_guidance_every=cache_guidance_every, cache_interval=cache_interval, eta=eta,
            eta_from=eta_from,
        )  # fmt: skip
    for note in video.metadata.get("notes", []):
        err.print(f"note: {note}", highlight=False)
    cache = video.metadata.get("step_cache")
    if cache:
        err.print(
            f"step cache: {cache['blocks_run']} of {cache['blocks_total']} transformer blocks run "
            f"({cache['blocks_total'] / max(cache['blocks_run'], 1):.2f}x fewer), "
            f"{cache['reused']} of {cache['evaluations']} forwards reused the cache",
            highlight=False,
        )  # fmt: skip
    files = export(video, output, exporting)
    for line in summary(video, files, output, exporting):
        err.print(line, highlight=False)
    took = time.perf_counter() - start
    mode = video.metadata.get("mode", "text-to-video")
    console.print(
        f"wrote {output}: {len(video.frames)} frames {width}x{height} at {fps:g} fps ({video.seconds:.2f} s), "
        f"{mode}, seed {seed}, {settings.steps} steps x {windows} window(s); "
        f"generated in {time.perf_counter() - loaded:.1f} s, total {took:.1f} s"
    )


@app.command("verify")
def verify(
    clip: Annotated[Path, typer.Argument(help="the video to check (MP4 for C2PA)")],
    trust: Annotated[
        Path | None, typer.Option(help="PEM root certificate(s) to trust for the C2PA signer")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the findings as JSON")] = False,
) -> None:
    """Read a clip's invisible watermark and C2PA manifest. Exit 0 verified, 1 not verified."""
    from kinema.production.verify import describe
    from kinema.production.verify import verify as check

    result = check(clip, trust)
    if as_json:
        console.print_json(json.dumps(result.to_dict()))
    else:
        for line in describe(result, trust):
            console.print(line, highlight=False, soft_wrap=True)
    raise typer.Exit(0 if result.ok else 1)


@app.command("plan")
def plan(
    seconds: Annotated[float, typer.Option(help="clip length")] = 2.0,
    fps: Annotated[float, typer.Option(help="frames per second")] = 8.0,
    size: Annotated[str, typer.Option(help="WIDTHxHEIGHT")] = "64x64",
    model: Annotated[str, typer.Option(help="model name or folder")] = "kinema-tiny",
    steps: Annotated[int | None, typer.Option(help="sampler steps [default: model's]")] = None,
    guidance: Annotated[float | None, typer.Option(help="guidance scale (1: no CFG)")] = None,
    solver: Annotated[str | None, typer.Option(help="euler or heun")] = None,
    cache_interval: CacheInterval = None,
    chained: Annotated[
        float | None, typer.Option(help="WINDOW_SECONDS: also plan a chain of such windows")
    ] = None,
    hierarchical: Annotated[
        bool,
        typer.Option(
            help="with --chained: also plan the keyframe pass then the chain (as "
            "kinema generate --hierarchical)"
        ),
    ] = False,
    text_tokens: Annotated[int, typer.Option(help="prompt length in tokens")] = 16,
    gpu_tflops: Annotated[float, typer.Option(help="GPU peak (989: H100 bf16 dense)")] = 989.0,
    gpu_utilisation: Annotated[float, typer.Option(help="fraction of the peak reached")] = 0.4,
    calibrate: Annotated[
        bool | None,
        typer.Option(help="time short runs for the estimate here [default: kinema's own models]"),
    ] = None,
) -> None:
    """What a generation costs before you run it: tokens, FLOPs, memory and time."""
    from types import SimpleNamespace

    import torch

    from kinema.api import load
    from kinema.convert.folders import model_layout, wan_configs
    from kinema.models import base_format, resolve_model, sampler_defaults
    from kinema.pipeline import plan as cost
    from kinema.pipeline.long_clip import (
        DEFAULT_WINDOW_FRAMES,
        check_hierarchical,
        check_single_window,
    )
    from kinema.pipeline.text_to_video import (
        GenerationSettings,
        check_settings,
        sampler_overrides,
        with_defaults,
    )
    from kinema.pipeline.wan_i2v import wan_images

    width, height = parse_size(size)
    if not 0 <= seconds < float("inf"):
        raise UsageError(f"--seconds must be 0 (one frame) or more, got {seconds}")
    if text_tokens < 1 or not gpu_tflops > 0 or not 0 < gpu_utilisation <= 1:
        raise UsageError("--text-tokens must be >= 1, --gpu-tflops > 0, --gpu-utilisation 0..1")
    if model.startswith("diffusers:"):
        raise UsageError("kinema plan costs kinema's own models; a diffusers pipeline has no plan")
    folder = resolve_model(model)
    pipe = None
    if model_layout(folder) in ("diffusers", "wan"):  # Wan2.1: configs and headers only
        dit_cfg, vae_cfg, text_bytes = wan_configs(folder)
        dit, vae = SimpleNamespace(cfg=dit_cfg), SimpleNamespace(cfg=vae_cfg)
        calibrate = bool(calibrate)  # only when asked: it loads the whole model
    else:
        pipe = load(model)
        dit, vae = pipe.t2v.dit, pipe.t2v.vae
        text_bytes = cost.parameter_bytes(pipe.t2v.text_encoder.model)
        calibrate = calibrate is not False
    given = sampler_overrides(steps, guidance, solver, cache_interval=cache_interval)
    sampler = with_defaults(sampler_defaults(folder), given)
    s = GenerationSettings.from_seconds(seconds, fps, width=width, height=height,
                                        **{k: v for k, v in sampler.items() if k != "shift"})  # fmt: skip
    check_settings(s, vae, dit)
    base = base_format(folder)
    chains = base.known_frames and not wan_images(dit.cfg)  # as Pipeline.takes_known_frames
    if not chains:  # as kinema generate: one window at most
        check_single_window(s.num_frames, fps, base.max_frames, folder.name)
    window = None
    if chained is not None:
        if not chained > 0:
            raise UsageError(f"--chained must be more than 0 s, got {chained:g}")
        if not chains:
            raise UsageError(
                f"--chained: {folder.name} cannot chain windows (it takes no known frames); "
                "plan it without --chained"
            )
        window = cost.frames_from_seconds(chained, fps, vae.cfg.temporal_factor)
        try:
            cost.chain_windows(s.num_frames, window, vae.cfg.temporal_factor)
        except cost.GenerationError as e:
            raise UsageError(
                f"--chained {chained:g} s ({window} frames at {fps:g} fps): {e}"
            ) from None
    n_key = None
    if hierarchical:  # as kinema generate --hierarchical: the same checks
        if window is None:
            raise UsageError(
                "--hierarchical plans the keyframe pass before a chain: it needs --chained"
            )
        try:
            n_key = check_hierarchical(dit.cfg.micro_conditioning, s.num_frames, base.max_frames)
        except cost.GenerationError as e:
            raise UsageError(f"--hierarchical: {e}") from None
    plans = {"one sequence": cost.plan_cost(dit.cfg, vae.cfg, s, text_tokens, None, text_bytes)}
    if window is not None:
        chain = cost.plan_cost(dit.cfg, vae.cfg, s, text_tokens, window, text_bytes)
        plans[f"chain of {len(chain.windows)} windows"] = chain
        if n_key is not None:
            plans[f"{n_key} keyframes + chain"] = cost.plan_cost(
                dit.cfg, vae.cfg, s, text_tokens, window, text_bytes, keyframes=n_key
            )
    cal = cost.calibrate((pipe or load(model)).t2v) if calibrate else None
    f, b = cost.format_flops, cost.format_bytes
    table = Table("", *plans, title=f"{s.num_frames} frames ({(s.num_frames - 1) / fps:g} s at "
                  f"{fps:g} fps) {width}x{height}, {model}, {s.steps} {s.solver} steps")  # fmt: skip
    rows = {
        "windows x frames": lambda p: f"{len(p.windows)} x {p.largest.frames}"
        + (f" (last {p.windows[-1].frames})" if p.windows[-1].frames != p.largest.frames else ""),
        "latent shape (C, T, H, W)": lambda p: " x ".join(map(str, p.largest.latent_shape)),
        "tokens per window": lambda p: f"{p.largest.tokens:,}",
        "forwards per window": lambda p: f"{p.evals_per_window} x batch {p.batch}" + (
            f", {p.reused_per_window} cached (interval {p.cache_interval})" if p.reused_per_window else ""
        ),
        "attention FLOPs per forward": lambda p: f(p.largest.attention_flops),
        "transformer FLOPs per forward": lambda p: f(p.largest.dit_flops),
        "sampling FLOPs": lambda p: f(p.sampling_flops),
        "VAE FLOPs": lambda p: f(p.vae_flops),
        "total FLOPs": lambda p: f(p.total_flops),
        "peak memory (weights + activations)": lambda p: f"{b(p.peak_bytes)} ({b(p.weight_bytes)} + {b(p.activation_bytes)})",
        "attention scores if materialised": lambda p: b(p.score_bytes),
        "time here": lambda p: cost.format_seconds(p.seconds(cal)) if cal else "not calibrated",
        f"time on a {gpu_tflops:g} TFLOP/s GPU": lambda p: cost.format_seconds(
            p.gpu_seconds(gpu_tflops * 1e12, gpu_utilisation)
        ),
    }  # fmt: skip
    for name, cell in rows.items():
        table.add_row(name, *(cell(p) for p in plans.values()))
    console.print(table)
    console.print(
        f"assumed: a {text_tokens}-token prompt; float32; fused attention (no N x N scores); "
        f"GPU at {gpu_utilisation:g} of its peak, at least {cost.GPU_LAUNCH_SECONDS * 1e6:g} us per kernel",
        highlight=False,
    )  # fmt: skip
    if s.cache_threshold is not None or s.cache_guidance_every > 1:
        console.print(
            "step caching by threshold or guidance every: not counted (what it saves depends "
            "on the run; kinema generate prints it)",
            highlight=False,
        )  # fmt: skip
    if cal is not None:
        console.print(
            f"calibrated here (torch threads: {torch.get_num_threads()}): transformer "
            f"{cal.dense_flops_per_s / 1e9:.3g} GFLOP/s + "
            f"{cal.forward_overhead_s * 1e3:.3g} ms per forward, attention "
            f"{cal.attention_flops_per_s / 1e9:.3g} GFLOP/s, VAE {cal.vae_flops_per_s / 1e9:.3g} "
            f"GFLOP/s, prompt {cal.text_encode_s * 1e3:.3g} ms",
            highlight=False,
        )  # fmt: skip
    images = wan_images(dit.cfg)
    if images:
        console.print(
            f"image-to-video: counted with the CLIP image encoder (Wan2.1's ViT-H/14: "
            f"{f(cost.WAN21_CLIP.flops(images))}, {b(cost.WAN21_CLIP.parameter_bytes)} of weights) "
            f"and the VAE encoding of the {s.num_frames}-frame conditioning clip",
            highlight=False,
        )  # fmt: skip
    if window is None and s.num_frames > base.max_frames and chains:
        console.print(
            f"note: kinema generate makes clips over {base.max_frames} frames as a chain of "
            f"{DEFAULT_WINDOW_FRAMES}-frame windows; --chained {(DEFAULT_WINDOW_FRAMES - 1) / fps:g} plans it",
            highlight=False,
        )  # fmt: skip


@app.command("extend")
def extend(
    clip: Annotated[Path, typer.Argument(help="the video to continue (MP4, WebM, GIF)")],
    prompt: Annotated[str, typer.Argument(help="what happens next")],
    seconds: Annotated[float, typer.Option(help="how much to add")] = 2.0,
    output: Annotated[
        Path, typer.Option("-o", "--output", help="MP4, GIF or WebM to write (the whole clip)")
    ] = Path("extended.mp4"),
    seed: Annotated[int, typer.Option(help="same seed, same continuation")] = 0,
    steps: Annotated[int | None, typer.Option(help="sampler steps [default: model's]")] = None,
    fit: Fit = "crop",
    size: Annotated[
        str | None, typer.Option(help="WIDTHxHEIGHT to work at [default: the clip's]")
    ] = None,
    motion: Motion = None,
    model: Annotated[str, typer.Option(help="model name or folder")] = "kinema-tiny",
) -> None:
    """Continue a clip: the new part is conditioned on its last frames."""
    from kinema.api import load
    from kinema.io.video import read_video
    from kinema.pipeline.text_to_video import check_prompt

    check_prompt(prompt)
    _check_output(output)
    if not 0 < seconds < float("inf"):
        raise UsageError(f"--seconds must be more than 0, got {seconds}")
    frames, fps, _ = read_video(clip)  # a missing file or not a video: one clear line
    if len(frames) < 2:
        raise UsageError(
            f"{clip} holds a single frame, not a clip; to animate an image use "
            "`kinema generate --image` or `kinema animate`"
        )
    dims = dict(zip(("width", "height"), parse_size(size), strict=True)) if size else {}
    pipe = load(model)
    with _progress() as progress:
        task = progress.add_task("extending", total=None)
        video = pipe.extend(frames, prompt, seconds, seed=seed, fps=fps, fit=fit, motion=motion,
                            steps=steps, callback=lambda i, n, x: progress.advance(task), **dims)  # fmt: skip
    for note in video.metadata.get("notes", []):
        err.print(f"note: {note}", highlight=False)
    video.save(output)
    console.print(
        f"wrote {output}: {len(frames)} frames of {clip.name} + {len(video.frames) - len(frames)} new "
        f"= {len(video.frames)} frames ({video.seconds:.2f} s at {fps:g} fps)"
    )


@app.command("animate")
def animate(
    photo: Annotated[Path, typer.Argument(help="the image to bring to life (PNG, JPEG, ...)")],
    prompt: Annotated[str, typer.Argument(help="the motion to add")],
    motion: Annotated[
        str, typer.Option(help="motion strengths to try, 0..255, comma-separated")
    ] = "50,127,200",
    max_warp: Annotated[
        float | None,
        typer.Option(help="warping-error budget [default: 1.5x the steadiest candidate's]"),
    ] = None,
    output: Annotated[Path, typer.Option("-o", "--output", help="the chosen clip")] = Path(
        "out.mp4"
    ),
    seconds: Annotated[float, typer.Option(help="clip length")] = 2.0,
    fit: Fit = "crop",
    size: Annotated[str, typer.Option(help="WIDTHxHEIGHT")] = "64x64",
    seed: Annotated[int, typer.Option(help="same seed for every candidate")] = 0,
    steps: Annotated[int | None, typer.Option(help="sampler steps [default: model's]")] = None,
    model: Annotated[str, typer.Option(help="model name or folder")] = "kinema-tiny",
) -> None:
    """One photo to video: one clip per motion setting, measured; keeps the one that adds the
    most motion within the warping-error budget. Writes the clip and a plot of the trade-off."""
    from kinema.api import load
    from kinema.pipeline.animate import animate as run_animate
    from kinema.pipeline.animate import parse_motions, plot_tradeoff
    from kinema.pipeline.text_to_video import check_prompt

    check_prompt(prompt)
    _check_output(output)
    motions = parse_motions(motion)
    image = _read_images({"photo": photo})["photo"]
    width, height = parse_size(size)
    pipe = load(model)
    if not pipe.t2v.dit.cfg.micro_conditioning:
        raise UsageError(f"model {model} has no motion input, so it cannot animate")
    with _progress() as progress:
        task = progress.add_task("candidates", total=len(motions))
        result = run_animate(
            pipe, image, prompt, motions, max_warp, seed=seed, seconds=seconds, width=width,
            height=height, fit=fit, steps=steps, on_candidate=lambda c: progress.advance(task),
        )  # fmt: skip
    table = Table(
        title=f"{photo.name}: motion settings (budget: warping error <= {result.budget:.2e})"
    )
    for col in ("motion", "warping error", "motion magnitude", "within budget", ""):
        table.add_column(col)
    for row in result.table():
        table.add_row(f"{row['motion']:g}", f"{row['warping_error']:.2e}",
                      f"{row['motion_magnitude']:.3f}", "yes" if row["within_budget"] else "no",
                      "chosen" if row["chosen"] else "")  # fmt: skip
    console.print(table)
    if not result.within_budget:
        err.print("note: no setting is within the budget; kept the steadiest one")
    best = result.best.video
    best.metadata["animate"] = result.table()
    best.save(output)
    plot = plot_tradeoff(result, output.with_name(output.stem + "_tradeoff.png"))
    console.print(f"wrote {output} (motion {result.best.motion:g}) and {plot}")


@app.command("shots")
def shots(
    shot_list: Annotated[
        Path | None, typer.Argument(help="shot list (.yaml or .json): a scene bible and shots")
    ] = None,
    prompt: Annotated[
        str | None, typer.Option(help="instead of a file: one prompt the planner splits into shots")
    ] = None,
    output: Annotated[
        Path, typer.Option("-o", "--output", help="MP4, GIF or WebM to write")
    ] = Path("shots.mp4"),
    seconds: Annotated[float, typer.Option(help="seconds per planned shot (with --prompt)")] = 2.0,
    steps: Annotated[int | None, typer.Option(help="sampler steps [default: model's]")] = None,
    seed: Annotated[int, typer.Option(help="seed of the first shot; shot i gets seed + i")] = 0,
    model: Annotated[str, typer.Option(help="model name or folder")] = "kinema-tiny",
    sheet: Annotated[
        bool, typer.Option(help="also write OUTPUT_sheet.png, a row per shot")
    ] = False,
) -> None:
    """Generate several shots with one scene bible and cut them together."""
    from kinema.api import load
    from kinema.io.images import contact_sheet, save_png
    from kinema.pipeline.shots import (
        generate_shots,
        load_shot_list,
        plan_shots,
        shot_clips,
        shot_prompt,
        shot_seed,
    )

    if (shot_list is None) == (prompt is None):
        raise UsageError("give either a shot list file or --prompt, not both and not neither")
    if output.suffix.lower() not in (".mp4", ".gif", ".webm"):
        raise UsageError(f"output must end in .mp4, .gif or .webm, got {output.name!r}")
    if not output.parent.is_dir():
        raise UsageError(f"the folder {output.parent} does not exist")
    plan = load_shot_list(shot_list) if shot_list is not None else plan_shots(prompt, seconds)
    table = Table("shot", "seconds", "seed", "prompt", title=f"{len(plan.shots)} shots")
    for i, shot in enumerate(plan.shots):
        table.add_row(shot.name, f"{shot.seconds:g}", str(shot_seed(shot, i, seed)),
                      shot_prompt(plan.bible, shot))  # fmt: skip
    console.print(table)
    pipe = load(model)
    with _progress() as progress:
        task = progress.add_task("shots", total=len(plan.shots))
        video = generate_shots(pipe, plan, seed, lambda done, _: progress.update(task, completed=done),
                               steps=steps)  # fmt: skip
    labels = [f"{s['name']}: {s['prompt']}" for s in video.metadata["shots"]]
    image = contact_sheet(shot_clips(video), labels) if sheet else None
    video.save(output)
    written = [str(output)]
    if image is not None:
        written.append(str(save_png(output.with_name(output.stem + "_sheet.png"), image)))
    console.print(
        f"wrote {' and '.join(written)}: {len(plan.shots)} shots, {len(video.frames)} frames "
        f"{plan.size[0]}x{plan.size[1]} at {plan.fps:g} fps ({video.seconds:.2f} s)"
    )


# ----------------------------------------------------------------------------- world


@world_app.command("render")
def world_render(
    caption: Annotated[
        str, typer.Argument(help='e.g. "a red circle moving left on a black background"')
    ],
    output: Annotated[
        Path, typer.Option("-o", "--output", help="MP4, GIF or WebM to write")
    ] = Path("clip.mp4"),
    size: Annotated[str, typer.Option(help="WIDTHxHEIGHT")] = "64x64",
    seconds: Annotated[float, typer.Option(help="clip length")] = 2.0,
    fps: Annotated[float, typer.Option(help="frames per second")] = 8.0,
    seed: Annotated[int, typer.Option(help="chooses where the objects start")] = 0,
) -> None:
    """Render exactly the scene a caption describes."""
    from kinema.io.video import write_video
    from kinema.world.parse import parse_caption
    from kinema.world.render import render
    from kinema.world.sampler import place
    from kinema.world.spec import check_render_request

    width, height = parse_size(size)
    if not 0 <= seconds < float("inf"):
        raise UsageError(f"--seconds must be 0 (one frame) or more, got {seconds}")
    num_frames = round(seconds * fps) + 1
    check_render_request(width, height, num_frames, fps)
    scene = place(
        parse_caption(caption), np.random.default_rng(seed), seconds, width, height, strict=False
    )
    frames = render(scene, width, height, num_frames, fps)
    write_video(output, frames, fps, metadata={"prompt": caption, "scene": scene.to_json()})
    console.print(f"wrote {output} ({num_frames} frames, {width}x{height}, {fps:g} fps)")


@world_app.command("sample")
def world_sample(
    n: Annotated[int, typer.Option("--n", help="number of clips")] = 16,
    output: Annotated[Path, typer.Option("-o", "--output", help="folder to write")] = Path(
        "samples"
    ),
    size: Annotated[str, typer.Option(help="WIDTHxHEIGHT")] = "64x64",
    frames: Annotated[int, typer.Option(help="frames per clip")] = 17,
    fps: Annotated[float, typer.Option(help="frames per second")] = 8.0,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
) -> None:
    """Write random world clips (MP4), their captions and a contact sheet PNG."""
    from kinema.io.images import contact_sheet, save_png
    from kinema.io.video import write_video
    from kinema.world.captions import caption
    from kinema.world.render import render
    from kinema.world.sampler import random_scene
    from kinema.world.spec import check_render_request

    if n < 1:
        raise UsageError(f"--n must be at least 1, got {n}")
    width, height = parse_size(size)
    check_render_request(width, height, frames, fps)
    output.mkdir(parents=True, exist_ok=True)
    rng, words = np.random.default_rng(seed), random.Random(seed)
    clips, captions = [], {}
    with _progress() as progress:
        for i in progress.track(range(n), description="rendering"):
            scene = random_scene(rng, (frames - 1) / fps, width, height)
            text = caption(scene, words)
            clip = render(scene, width, height, frames, fps)
            name = f"sample_{i:03d}.mp4"
            write_video(
                output / name, clip, fps, metadata={"prompt": text, "scene": scene.to_json()}
            )
            clips.append(clip)
            captions[name] = text
    (output / "prompts.json").write_text(json.dumps(captions, indent=1))
    (output / "captions.txt").write_text("".join(f"{k}\t{v}\n" for k, v in captions.items()))
    labels = [f"{k}: {v}" for k, v in captions.items()]
    save_png(output / "contact_sheet.png", contact_sheet(clips, labels, frames_per_clip=9))
    console.print(f"wrote {n} clips, prompts.json, captions.txt and contact_sheet.png to {output}/")


@world_app.command("vocab")
def world_vocab() -> None:
    """Every word the world understands, with its synonyms."""
    from kinema.world import captions as cap

    table = Table("class", "value", "words")
    for cls, words in [
        ("color", cap.COLOR_WORDS), ("shape", cap.SHAPE_WORDS), ("size", cap.SIZE_WORDS),
        ("direction", cap.DIRECTION_WORDS), ("speed", cap.SPEED_WORDS),
        ("background", cap.BACKGROUND_WORDS), ("camera", cap.CAMERA_PHRASES),
    ]:  # fmt: skip
        for value, ws in words.items():
            table.add_row(cls, value, ", ".join(ws))
    for motion, phrases in cap.MOTION_PHRASES.items():
        table.add_row("motion", motion, ", ".join(p[0] for p in phrases))
    table.add_row("occluder", "pillar", ", ".join(cap.OCCLUDER_PHRASES))
    console.print(table)


# ----------------------------------------------------------------------------- bench


@bench_app.command("shapes")
def bench_shapes(
    generator: Annotated[
        list[str] | None,
        typer.Option(
            help="generator to judge (repeatable): groundtruth, independent-frames, kinema-tiny, a model folder"
        ),
    ] = None,
    videos: Annotated[
        Path | None,
        typer.Option(help="judge a folder of MP4s instead (prompts.json or MP4 'prompt' metadata)"),
    ] = None,
    quick: Annotated[bool, typer.Option(help="the quick subset of prompts")] = False,
    seeds: Annotated[int, typer.Option(help="seeds per prompt")] = 1,
    first_seed: Annotated[
        int, typer.Option(help="first seed (--seeds 3 --first-seed 3: seeds 3, 4, 5)")
    ] = 0,
    output: Annotated[Path, typer.Option("-o", "--output", help="report folder")] = Path(
        "reports/shapesbench"
    ),
    steps: Annotated[int | None, typer.Option(help="sampler steps for model generators")] = None,
    guidance: Annotated[
        float | None, typer.Option(help="guidance scale for model generators")
    ] = None,
    shift: Annotated[float | None, typer.Option(help="schedule shift for model generators")] = None,
    solver: Annotated[str | None, typer.Option(help="euler or heun for model generators")] = None,
    eta: Eta = None,
    eta_from: EtaFrom = None,
    size: Annotated[str, typer.Option(help="WIDTHxHEIGHT of the judged clips")] = "64x64",
    frames: Annotated[int, typer.Option(help="frames per judged clip")] = 17,
    fps: Annotated[float, typer.Option(help="frames per second of the judged clips")] = 8.0,
    cache_threshold: CacheThreshold = None,
    cache_guidance_every: CacheGuidance = None,
    cache_interval: CacheInterval = None,
) -> None:
    """Run ShapesBench and write results.json, report.md, report.html and plots."""
    from kinema.eval.generators import folder_clips, get_generator
    from kinema.eval.report import comparison_rows, write_report
    from kinema.eval.shapesbench import BenchSettings, ClipResult, load_suite, run_bench, score_clip
    from kinema.pipeline.text_to_video import sampler_overrides

    if seeds < 1:
        raise UsageError(f"--seeds must be at least 1, got {seeds}")
    if first_seed < 0:
        raise UsageError(f"--first-seed must be 0 or more, got {first_seed}")
    if frames < 1 or fps <= 0:
        raise UsageError(f"--frames must be at least 1 and --fps positive, got {frames} and {fps}")
    width, height = parse_size(size)
    settings = BenchSettings(width=width, height=height, num_frames=frames, fps=fps)
    runs: dict[str, list[ClipResult]] = {}
    examples: dict[str, list] = {}
    with _progress() as progress:
        if videos is not None:
            clips = folder_clips(videos)
            task = progress.add_task(f"judging {videos}", total=len(clips))
            runs["videos"], examples["videos"] = [], []
            for name, prompt, frames, fps in clips:
                runs["videos"].append(ClipResult(name, prompt, 0, score_clip(frames, prompt, fps)))
                if len(examples["videos"]) < 12:
                    examples["videos"].append((prompt, frames))
                progress.advance(task)
        names = generator or ([] if videos is not None else ["groundtruth", "independent-frames"])
        suite = load_suite(quick)
        overrides = sampler_overrides(steps, guidance, solver, shift, cache_threshold,
                                      cache_guidance_every, cache_interval, eta,
                                      eta_from)  # fmt: skip
        caching = [f"blocks {cache_threshold:g}"] if cache_threshold is not None else []
        caching += (
            [f"guidance every {cache_guidance_every}"] if (cache_guidance_every or 1) > 1 else []
        )
        caching += [f"interval {cache_interval}"] if (cache_interval or 1) > 1 else []
        caching = caching or (["off"] if cache_interval == 1 else [])  # the model's default off
        generators = {}  # by report name; the FLOPs line below is for those that cached
        for name in names:
            gen = get_generator(name, **overrides)
            if caching and hasattr(gen, "cache_totals"):
                name = f"{name} (cache {', '.join(caching)})"
            generators[name] = gen
            task = progress.add_task(name, total=len(suite) * seeds)
            examples[name] = []

            def on_clip(result, frames, name=name, task=task):
                if result.seed == first_seed and len(examples[name]) < 12:
                    examples[name].append((result.prompt, frames))
                progress.advance(task)

            seed_range = range(first_seed, first_seed + seeds)
            runs[name] = run_bench(gen, suite, seed_range, settings, on_clip)
    summaries = write_report(output, runs, examples, settings)
    table = Table("dimension", *summaries, title="ShapesBench")
    for dim, cells in comparison_rows(summaries):
        table.add_row(dim, *cells)
    console.print(table)
    for name, gen in generators.items():
        t = getattr(gen, "cache_totals", None)
        if not t or not t["blocks_total"]:
            continue
        console.print(
            f"{name}: {t['blocks_run']} of {t['blocks_total']} transformer block-rows run "
            f"({t['blocks_total'] / max(t['blocks_run'], 1):.2f}x fewer); transformer FLOPs "
            f"{t['flops'] / 1e12:.3g} of {t['flops_uncached'] / 1e12:.3g} TFLOP "
            f"({t['flops_uncached'] / max(t['flops'], 1):.2f}x fewer)",
            highlight=False,
        )  # fmt: skip
    console.print(f"report: {output / 'report.html'} (also report.md, results.json, scores.png)")


@bench_app.command("compare")
def bench_compare(
    a: Annotated[Path, typer.Argument(help="run A: a results.json or its report folder")],
    b: Annotated[Path, typer.Argument(help="run B, on the same prompts and seeds")],
    a_generator: Annotated[
        str | None, typer.Option(help="generator of run A [default: its one non-reference]")
    ] = None,
    b_generator: Annotated[
        str | None, typer.Option(help="generator of run B [default: its one non-reference]")
    ] = None,
    confidence: Annotated[float, typer.Option(help="bootstrap interval, 0.5..0.999")] = 0.9,
) -> None:
    """Paired comparison of two ShapesBench runs: per dimension B - A over the clips of the same
    prompt and seed, with a bootstrap interval; * marks a change whose interval excludes 0."""
    from kinema.eval.compare import compare_runs, load_clips
    from kinema.eval.shapesbench import ACCURACY_DIMENSIONS

    if not 0.5 <= confidence <= 0.999:
        raise UsageError(f"--confidence must be 0.5..0.999, got {confidence}")
    name_a, clips_a = load_clips(a, a_generator)
    name_b, clips_b = load_clips(b, b_generator)
    rows, pooled = compare_runs(clips_a, clips_b, confidence)
    table = Table("dimension", "pairs", "A", "B", "B - A", f"{100 * confidence:g}% interval",
                  "changed", title="ShapesBench, paired by prompt and seed",
                  caption=f"A: {name_a} ({a})\nB: {name_b} ({b})")  # fmt: skip
    for r in [*rows, pooled]:
        accuracy = r.dimension in ACCURACY_DIMENSIONS or r.dimension == "pooled"
        value = (lambda v: f"{v:.1f}%") if accuracy else (lambda v: f"{v:.3g}")
        delta = (lambda v: f"{v:+.1f}") if accuracy else (lambda v: f"{v:+.2g}")
        table.add_row(r.dimension, str(r.pairs), value(r.mean_a), value(r.mean_b),
                      delta(r.difference) + (" *" if r.significant else ""),
                      f"{delta(r.low)}..{delta(r.high)}", str(r.changed))  # fmt: skip
    console.print(table)


# ----------------------------------------------------------------------------- train


# options both training commands take
RunFolder = Annotated[
    Path, typer.Option("-o", "--output", help="run folder (resumes if it has state.pt)")
]
Steps = Annotated[int, typer.Option(help="optimizer steps")]
Minutes = Annotated[float | None, typer.Option(help="stop (and save) after this much wall time")]
BatchSize = Annotated[int, typer.Option(help="clips per step per process")]
LearningRate = Annotated[float, typer.Option(help="peak learning rate")]
Seed = Annotated[int, typer.Option(help="random seed")]


@train_app.command("vae")
def train_vae(
    output: RunFolder = Path("runs/vae"),
    steps: Steps = 4000,
    minutes: Minutes = None,
    batch_size: BatchSize = 6,
    crop: Annotated[int, typer.Option(help="random crop side in pixels (multiple of 4)")] = 32,
    lr: LearningRate = 1e-3,
    seed: Seed = 0,
    log_every: Annotated[int, typer.Option(help="log a row every N steps")] = 10,
    init: Annotated[Path | None, typer.Option(help="start from these VAE weights")] = None,
    decoder_only: Annotated[
        bool, typer.Option(help="train the decoder only (keeps the latent space)")
    ] = False,
    temporal_weight: Annotated[
        float,
        typer.Option(help="weight of a term that makes frame-to-frame change match the clip's"),
    ] = 0.0,
    latent_noise: Annotated[
        float,
        typer.Option(help="largest noise std on the latents before decoding (--decoder-only)"),
    ] = 0.0,
    latent_pool: Annotated[
        list[Path] | None,
        typer.Option(
            help="a diffusion model's latents paired with clips (tools/latent_pool.py); "
            "repeat it to train on several pools as one"
        ),
    ] = None,
    pool_share: Annotated[
        float, typer.Option(help="share of batches taken from --latent-pool")
    ] = 0.5,
) -> None:
    """Train the causal 3D VAE on world clips. Writes vae.safetensors, log.jsonl, loss.png."""
    from kinema.train.distributed import init_distributed, shutdown
    from kinema.train.trainer import TrainConfig, train
    from kinema.train.vae_task import VAETask

    if decoder_only and init is None:
        raise UsageError("--decoder-only needs --init: the VAE whose latent space to keep")
    if latent_noise and not decoder_only:
        raise UsageError("--latent-noise needs --decoder-only (the encoder's latents are kept)")
    if temporal_weight < 0 or latent_noise < 0:
        raise UsageError("--temporal-weight and --latent-noise take 0 or more")
    if latent_pool and not decoder_only:
        raise UsageError("--latent-pool needs --decoder-only (the pool's latents are fixed)")
    if not 0 <= pool_share <= 1:
        raise UsageError(f"--pool-share must lie in [0, 1], got {pool_share:g}")
    from kinema.models import load_vae

    start = load_vae(init) if init is not None else None  # a bad path stops us before any work
    pool = None
    if latent_pool:
        from kinema.train.latent_pool import LatentPoolError, join_pools, load_latent_pool

        try:
            pool = join_pools([load_latent_pool(f, start.cfg.latent_channels) for f in latent_pool])
        except LatentPoolError as e:
            raise UsageError(str(e)) from None
    info = init_distributed()
    cfg = TrainConfig(
        str(output), steps=steps, minutes=minutes, lr=lr, warmup=min(200, steps // 5), seed=seed,
        save_every=250, log_every=log_every,
    )  # fmt: skip
    train(
        VAETask(
            batch_size=batch_size, crop=crop, init=start, decoder_only=decoder_only,
            temporal_weight=temporal_weight, latent_noise=latent_noise, pool=pool,
            pool_share=pool_share,
        ),
        cfg,
        info,
    )  # fmt: skip
    if info.is_main:
        console.print(f"weights: {output / 'vae.safetensors'}; loss curve: {output / 'loss.png'}")
    shutdown(info)


@train_app.command("dit")
def train_dit(
    vae: Annotated[Path, typer.Option(help="trained VAE weights (vae.safetensors)")],
    output: RunFolder = Path("runs/dit"),
    steps: Steps = 6000,
    minutes: Minutes = None,
    batch_size: BatchSize = 8,
    dim: Annotated[int, typer.Option(help="transformer width")] = 256,
    layers: Annotated[int, typer.Option(help="transformer blocks")] = 8,
    heads: Annotated[int, typer.Option(help="attention heads")] = 4,
    prediction: Annotated[str, typer.Option(help="network output: v or x0")] = "v",
    pool: Annotated[int, typer.Option(help="captions in the pre-encoded pool")] = 6000,
    lr: LearningRate = 5e-4,
    seed: Seed = 0,
    reuse: Annotated[
        int, typer.Option(help="optimizer steps per rendered batch (fresh noise each)")
    ] = 1,
    init: Annotated[
        Path | None,
        typer.Option(help="start from these DiT weights (their config wins over --dim etc.)"),
    ] = None,
    micro: Annotated[
        bool,
        typer.Option(
            help="motion-strength and fps inputs (added to --init weights that lack them)"
        ),
    ] = True,
    pooled_text: Annotated[
        bool,
        typer.Option(
            help="the mean text state as a clip-wide input next to the timestep (added to --init "
            "weights that lack it)"
        ),
    ] = True,
    pairs: Annotated[
        float,
        typer.Option(
            help="share of samples trained as direction pairs: a scene and its mirror image "
            "with the same noise, told apart only by the caption's direction words",
        ),
    ] = 0.5,
    time_shift: Annotated[
        float,
        typer.Option(
            help="shift the training times towards noise like the sampler's schedule (3: "
            "kinema-tiny's sampling shift)",
        ),
    ] = 1.0,
    direction_focus: Annotated[
        float,
        typer.Option(
            help="share of batches made only of left/right/up/down movers with their first "
            "frame revealed and their mirror image beside them (teaches the direction words)",
        ),
    ] = 0.0,
    high_noise: Annotated[
        float,
        typer.Option(
            help="share of samples trained at times drawn uniformly from [0.9, 1], where a "
            "clip's direction, count and layout are decided (on top of --time-shift)",
        ),
    ] = 0.0,
    count_pairs: Annotated[
        float,
        typer.Option(
            help="chance that a sample of two or more objects comes with the same scene less "
            "one object as a pair (same noise; only the caption says whether it is there)",
        ),
    ] = 0.0,
    shape_pairs: Annotated[
        float,
        typer.Option(
            help="chance that a sample with a circle or a square comes with the same scene "
            "with one of them drawn as the other shape (same noise; only the caption's shape "
            "word tells them apart)",
        ),
    ] = 0.0,
    pair_focus: Annotated[
        float,
        typer.Option(
            help="extra loss weight (on top of 1) where a pair's two clean latents differ, "
            "largest difference in a frame gets all of it: a square's corners or a count pair's "
            "missing object are a few latent pixels of a plain MSE",
        ),
    ] = 0.0,
    pair_focus_on: Annotated[
        str,
        typer.Option(
            help="which pairs get --pair-focus, comma-separated: direction, count, shape",
        ),
    ] = "direction,count,shape",
    object_counts: Annotated[
        str | None,
        typer.Option(
            help="relative weights of scenes with 1, 2 and 3 objects among the training "
            "samples, e.g. 2,1,1 (default: the caption pool's mix, about equal)",
        ),
    ] = None,
    frame_change: Annotated[
        float,
        typer.Option(
            help="weight of a loss term on the frame-to-frame change of the prediction's "
            "error: an error that flips between frames is flicker, one a plain MSE does not "
            "single out",
        ),
    ] = 0.0,
    whiten_text: Annotated[
        bool,
        typer.Option(
            help="whiten the text states with the caption pool's statistics (added to --init "
            "weights that lack it, keeping what they compute)"
        ),
    ] = True,
    precision: Annotated[
        str,
        typer.Option(
            help="auto, bf16 or fp32: bf16 trains with mixed precision (autocast; weights and "
            "optimizer stay float32); auto picks it where bfloat16 is native (AMX or "
            "AVX512-BF16 CPUs, GPUs that have it)"
        ),
    ] = "auto",
) -> None:
    """Train the diffusion transformer on VAE latents of world clips. Writes dit.safetensors."""
    from kinema.dit.transformer import DiTConfig
    from kinema.models import load_dit, load_vae
    from kinema.text.encoder import TextEncoder
    from kinema.train.distributed import init_distributed, shutdown
    from kinema.train.dit_task import DiTTask, focus_kinds, parse_object_counts
    from kinema.train.trainer import TrainConfig, native_bf16, train

    if precision not in ("auto", "bf16", "fp32"):
        raise UsageError(f"--precision must be auto, bf16 or fp32, got {precision!r}")
    shares = {"--pairs": pairs, "--direction-focus": direction_focus, "--high-noise": high_noise,
              "--count-pairs": count_pairs, "--shape-pairs": shape_pairs}  # fmt: skip
    for name, value in shares.items():
        if not 0 <= value <= 1:
            raise UsageError(f"{name} is a share of samples, from 0 to 1, got {value:g}")
    if time_shift < 1:
        raise UsageError(f"--time-shift must be 1 (no shift) or more, got {time_shift:g}")
    if pair_focus < 0 or frame_change < 0:
        raise UsageError("--pair-focus and --frame-change take 0 or more")
    try:
        counts = None if object_counts is None else parse_object_counts(object_counts)
    except ValueError as e:
        raise UsageError(f"--object-counts takes {e}") from None
    focus_on = tuple(k.strip() for k in pair_focus_on.split(",") if k.strip())
    try:  # checked before any work, like every option
        focus_kinds(focus_on)
    except ValueError as e:
        raise UsageError(f"--pair-focus-on {pair_focus_on!r}: {e} (comma-separated)") from None
    # weights are loaded (and a bad path reported) before any process group or run folder
    latent_vae = load_vae(vae)
    start = (
        load_dit(
            init,
            add_micro_conditioning=micro,
            add_pooled_text=pooled_text,
            add_text_whitening=whiten_text,
        )  # fmt: skip
        if init is not None
        else None
    )
    info = init_distributed()
    if precision == "auto":
        precision = "bf16" if native_bf16(info.device) else "fp32"
    output.mkdir(parents=True, exist_ok=True)
    cfg = DiTConfig(dim=dim, ffn_dim=4 * dim, heads=heads, layers=layers, prediction=prediction,
                    micro_conditioning=micro, pooled_text=pooled_text,
                    text_whitening=whiten_text)  # fmt: skip
    if start is not None:
        cfg = start.cfg
    cache = output if info.is_main else None  # one writer for the caption cache
    task = DiTTask(
        latent_vae.to(info.device),
        TextEncoder(),
        cfg,
        batch_size,
        pool,
        cache_dir=cache,
        reuse=reuse,
        init=start,
        pair_prob=pairs,
        time_shift=time_shift,
        direction_focus=direction_focus,
        high_noise=high_noise,
        count_pairs=count_pairs,
        shape_pairs=shape_pairs,
        pair_focus=pair_focus,
        pair_focus_on=focus_on,
        frame_change=frame_change,
        object_counts=counts,
    )
    tcfg = TrainConfig(
        str(output), steps=steps, minutes=minutes, lr=lr, warmup=300, seed=seed, save_every=250,
        precision=precision,
    )  # fmt: skip
    train(task, tcfg, info)
    if info.is_main:
        console.print(f"weights: {output / 'dit.safetensors'}; loss curve: {output / 'loss.png'}")
    shutdown(info)


def _train_upsampler(kind: str, output: Path, steps: int, minutes: float | None,
                     batch_size: int, lr: float, seed: int, temporal: float = 1.0) -> None:  # fmt: skip
    from kinema.train.distributed import init_distributed, shutdown
    from kinema.train.trainer import TrainConfig, train
    from kinema.train.upsample_tasks import InterpTask, SRTask

    info = init_distributed()
    if kind == "interp":
        task = InterpTask(batch_size=batch_size)
    else:
        task = SRTask(batch_size=batch_size, temporal=temporal)
    cfg = TrainConfig(str(output), steps=steps, minutes=minutes, lr=lr,
                      warmup=min(200, steps // 5), seed=seed, save_every=250)  # fmt: skip
    train(task, cfg, info)
    if info.is_main:
        weights = output / f"{kind}.safetensors"
        console.print(f"weights: {weights}; loss curve: {output / 'loss.png'}")
    shutdown(info)


@train_app.command("interp")
def train_interp(
    output: RunFolder = Path("runs/interp"),
    steps: Steps = 6000,
    minutes: Minutes = None,
    batch_size: BatchSize = 16,
    lr: LearningRate = 1e-3,
    seed: Seed = 0,
) -> None:
    """Train the frame interpolator on the world's true in-between frames. Writes
    interp.safetensors (use it with `generate --interpolator PATH`)."""
    _train_upsampler("interp", output, steps, minutes, batch_size, lr, seed)


@train_app.command("sr")
def train_sr(
    output: RunFolder = Path("runs/sr"),
    steps: Steps = 6000,
    minutes: Minutes = None,
    batch_size: BatchSize = 16,
    lr: LearningRate = 1e-3,
    seed: Seed = 0,
    temporal: Annotated[
        float, typer.Option(help="weight of the frame-to-frame change's error in the loss")
    ] = 1.0,
) -> None:
    """Train the x4 video super-resolution model on the world rendered at both sizes. Writes
    sr.safetensors (use it with `generate --upscaler PATH`)."""
    _train_upsampler("sr", output, steps, minutes, batch_size, lr, seed, temporal)


# ----------------------------------------------------------------------------- serve


def _serving():
    """The serving package, or a one-line error naming the extra to install."""
    try:
        import fastapi  # noqa: F401
        import sqlalchemy  # noqa: F401

        import kinema.serve.config as config
    except ImportError as e:
        raise UsageError(
            f"serving needs the 'serve' extra ({e.name} is missing): pip install -e '.[serve]'"
        ) from None
    return config


def _serve_config(
    data_dir: Path, database: str | None, model: str, api_key: list[str] | None, **kw
):
    config = _serving()
    from kinema.models import resolve_model

    resolve_model(model)  # an unknown model is a usage error now, not in every worker
    return config.ServeConfig(
        data_dir=data_dir, database_url=database, model=model,
        api_keys=config.keys_from_env(api_key), **kw,
    )  # fmt: skip


@contextlib.contextmanager
def _store_errors(config):
    """A job store or data directory that cannot be opened is a one-line usage error."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        yield
    except SQLAlchemyError as e:
        reason = str(getattr(e, "orig", None) or e).strip().splitlines()[0]
        raise UsageError(f"cannot use the job store {config.db_url}: {reason}") from None
    except PermissionError as e:
        raise UsageError(f"cannot write to {e.filename}: permission denied") from None


DataDir = Annotated[Path, typer.Option(help="jobs database (SQLite) and video files")]
Database = Annotated[
    str | None,
    typer.Option(
        help="job store URL, e.g. postgresql+psycopg://user@host/db (default: SQLite in --data-dir)"
    ),
]
LeaseSeconds = Annotated[
    float, typer.Option(help="a job whose worker is silent this long is taken up again")
]
MaxAttempts = Annotated[int, typer.Option(help="claims of one job before it fails as lost")]
CostPerHour = Annotated[float, typer.Option(help="USD per worker-hour, for the cost estimate")]


@app.command("serve")
def serve(
    host: Annotated[
        str, typer.Option(help="address to listen on (loopback unless told)")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port (0: any free one, printed)")] = 8000,
    data_dir: DataDir = Path("kinema-data"),
    database: Database = None,
    workers: Annotated[int, typer.Option(help="worker processes to start (0: API only)")] = 1,
    model: Annotated[str, typer.Option(help="model name or folder")] = "kinema-tiny",
    api_key: Annotated[
        list[str] | None,
        typer.Option(
            help="accepted bearer key (repeatable; also KINEMA_API_KEYS, comma-separated)"
        ),
    ] = None,
    no_auth: Annotated[
        bool,
        typer.Option("--no-auth", help="allow serving without API keys on a non-loopback address"),
    ] = False,
    ui: Annotated[bool, typer.Option(help="mount the web UI at /ui")] = True,
    max_seconds: Annotated[float, typer.Option(help="longest clip a request may ask for")] = 8.0,
    max_pixels: Annotated[int, typer.Option(help="largest width x height per frame")] = 256 * 256,
    max_steps: Annotated[int, typer.Option(help="most sampler steps per request")] = 50,
    max_active: Annotated[
        int, typer.Option(help="queued + running jobs per key; one more gets 429")
    ] = 8,
    max_upload_mb: Annotated[float, typer.Option(help="largest upload")] = 10.0,
    default_steps: Annotated[
        int | None, typer.Option(help="steps when a request names none [default: the model's]")
    ] = None,
    lease_seconds: LeaseSeconds = 30.0,
    max_attempts: MaxAttempts = 3,
    retention_hours: Annotated[
        float, typer.Option(help="delete a video's files this long after it finished (0: keep)")
    ] = 24.0,
    cost_per_hour: CostPerHour = 0.10,
    poll_after_ms: Annotated[int, typer.Option(help="the least poll interval suggested")] = 500,
    watermark: Annotated[
        bool, typer.Option(help="invisible watermark (the job id) on every served frame")
    ] = True,
    c2pa: Annotated[bool, typer.Option(help="sign served MP4s with a C2PA manifest")] = True,
) -> None:
    """Serve the OpenAI-compatible video API (and the web UI at /ui) with worker processes."""
    import logging

    cfg = _serving()
    if workers < 0 or not 0 <= port <= 65535:
        raise UsageError(
            f"--workers must be 0 or more and --port 0 to 65535, got {workers}, {port}"
        )
    if lease_seconds <= 0 or max_attempts < 1 or retention_hours < 0:
        raise UsageError("--lease-seconds must be > 0, --max-attempts >= 1, --retention-hours >= 0")
    limits = cfg.Limits(
        max_seconds=max_seconds, max_pixels=max_pixels, max_steps=max_steps,
        max_active_per_key=max_active, max_upload_bytes=int(max_upload_mb * 1024 * 1024),
    )  # fmt: skip
    config = _serve_config(
        data_dir, database, model, api_key, limits=limits,
        defaults=cfg.Defaults(steps=default_steps and min(default_steps, max_steps)),
        lease_seconds=lease_seconds,
        max_attempts=max_attempts, retention_hours=retention_hours, cost_per_hour=cost_per_hour,
        poll_after_ms=poll_after_ms, watermark=watermark, c2pa=c2pa,
    )  # fmt: skip
    from kinema.serve.server import is_loopback
    from kinema.serve.server import serve as run_server

    if not config.api_keys and not is_loopback(host) and not no_auth:
        raise UsageError(
            f"refusing to serve on {host} without API keys: give --api-key (or KINEMA_API_KEYS), "
            "or --no-auth to serve openly"
        )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    with _store_errors(config):
        run_server(config, host, port, workers, ui)


@app.command("worker")
def worker(
    data_dir: DataDir = Path("kinema-data"),
    database: Database = None,
    model: Annotated[
        str, typer.Option(help="model name or folder (takes its jobs only)")
    ] = "kinema-tiny",
    lease_seconds: LeaseSeconds = 30.0,
    max_attempts: MaxAttempts = 3,
    cost_per_hour: CostPerHour = 0.10,
    threads: Annotated[int, typer.Option(help="torch threads (0: torch's default)")] = 0,
    max_jobs: Annotated[int | None, typer.Option(help="exit after this many jobs")] = None,
    idle_exit: Annotated[
        float | None, typer.Option(help="exit after this many seconds with an empty queue")
    ] = None,
    parent_pid: Annotated[
        int | None, typer.Option(hidden=True, help="stop when this process (kinema serve) dies")
    ] = None,
    watermark: Annotated[
        bool, typer.Option(help="invisible watermark (the job id) on every served frame")
    ] = True,
    c2pa: Annotated[bool, typer.Option(help="sign served MP4s with a C2PA manifest")] = True,
) -> None:
    """Take jobs from the queue and generate them (model loaded once). SIGTERM hands back the
    running job."""
    import logging
    import os
    import signal
    import threading

    _serving()
    config = _serve_config(data_dir, database, model, None, lease_seconds=lease_seconds,
                           max_attempts=max_attempts, cost_per_hour=cost_per_hour)  # fmt: skip
    if threads < 0:
        raise UsageError(f"--threads must be 0 or more, got {threads}")
    import torch

    from kinema.serve.jobs import JobStore
    from kinema.serve.worker import Worker

    if threads:
        torch.set_num_threads(threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    config.data_dir.mkdir(parents=True, exist_ok=True)
    with _store_errors(config):
        store = JobStore(config.db_url, lease_seconds, max_attempts)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if parent_pid is not None:  # started by kinema serve: never outlive it

        def watch_parent():
            while not stop.wait(1.0):
                if os.getppid() != parent_pid:
                    stop.set()

        threading.Thread(target=watch_parent, daemon=True).start()
    if c2pa:  # credentials (or the development chain) checked before the first job
        from kinema.production.provenance import ProvenanceError, signing_identity

        try:
            signing_identity()
        except ProvenanceError as e:
            raise UsageError(f"{e} (or run with --no-c2pa)") from None
    runner = Worker(store, config.data_dir, model, cost_per_hour=cost_per_hour,
                    watermark=watermark, c2pa=c2pa)  # fmt: skip
    logging.getLogger("kinema.worker").info("worker %s ready (model %s)", runner.id, model)
    try:
        runner.run(stop, max_jobs=max_jobs, idle_exit=idle_exit)
    finally:
        store.close()


def main() -> None:
    from kinema.world.spec import WorldError

    try:
        app()  # standalone: click reports its own usage errors and exits 2
    except (
        UsageError,
        WorldError,
        ValueError,
        FileNotFoundError,
        KeyError,
    ) as e:  # CheckpointError too
        message = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        err.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
