"""How close `kinema plan` comes to real generations: estimated against measured wall time (and,
with --memory, peak memory), printed as a table and then as JSON.

    python benchmarks/plan_accuracy.py [--model kinema-tiny] [--steps N] [--threads 1] [--memory]
                                       [--cases 0 1 ...]

One calibration at the start predicts every setting, as `kinema plan` would ("estimated"); a
second one just before each case ("recalibrated") separates the model's error from the drift
of a shared machine's speed. Times are of the loaded pipeline, `pipe(prompt, seconds=...)`
with the model's sampler defaults (kinema-tiny's step caching too), in plan and run alike
(clips over the model's one window, kinema-tiny's 33 frames, are chains of 17-frame windows
there, and are planned as such), best of --repeats runs; the last case is one long sequence
through TextToVideo.generate. Peak memory
is measured in a fresh process per case: the peak RSS during a generation minus the RSS
before it, with glibc told to return freed blocks (mallopt), against the plan's activations.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import subprocess
import sys
import time

import torch

import kinema
from kinema.pipeline.long_clip import DEFAULT_WINDOW_FRAMES
from kinema.pipeline.plan import calibrate, parameter_bytes, plan_cost
from kinema.pipeline.text_to_video import GenerationSettings

PROMPT = "a red circle moving left on a black background"
# (name, seconds, width, height, one sequence even if long)
CASES = [
    ("64x64 1 s", 1.0, 64, 64, False),
    ("64x64 2 s", 2.0, 64, 64, False),
    ("64x64 4 s", 4.0, 64, 64, False),
    ("96x64 2 s", 2.0, 96, 64, False),
    ("128x128 2 s", 2.0, 128, 128, False),
    ("64x64 8 s chained", 8.0, 64, 64, False),
    ("64x64 20 s one sequence", 20.0, 64, 64, True),
]


def settings_for(pipe, case, steps: int | None) -> GenerationSettings:
    """The settings a generation of this case runs with: the model's own sampler defaults
    (kinema-tiny's step caching included), so that plan and run count the same forwards."""
    _, seconds, width, height, _ = case
    return pipe.settings(seconds=seconds, width=width, height=height, steps=steps)


def plan_for(pipe, case, steps: int | None):
    s = settings_for(pipe, case, steps)
    chained = not case[4] and pipe.long_mode(s) == "chain"
    t2v = pipe.t2v
    text = parameter_bytes(t2v.text_encoder.model)
    return plan_cost(t2v.dit.cfg, t2v.vae.cfg, s, chained_window_frames=DEFAULT_WINDOW_FRAMES if chained else None,
                     text_encoder_bytes=text)  # fmt: skip


def run(pipe, case, steps: int | None) -> None:
    """The loaded pipeline (which chains clips over its one window), or one sequence through
    TextToVideo.generate."""
    s = settings_for(pipe, case, steps)
    if case[4]:
        pipe.t2v.generate(PROMPT, s)
    else:
        _, seconds, width, height, _ = case
        pipe(PROMPT, seconds=seconds, width=width, height=height, steps=steps)


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def peak_of(case: int, steps: int) -> None:
    """In a fresh process: print the extra peak RSS of one generation, as JSON."""
    ctypes.CDLL("libc.so.6").mallopt(-3, 64 * 1024)  # M_MMAP_THRESHOLD: free returns memory
    pipe = kinema.load()
    run(pipe, CASES[case], 1)  # warm-up
    before = _status_bytes("VmRSS:")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak RSS
    run(pipe, CASES[case], steps)
    print(json.dumps({"extra_peak_bytes": _status_bytes("VmHWM:") - before}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="kinema-tiny")
    parser.add_argument("--steps", type=int, default=None, help="default: the model's own")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--memory", action="store_true", help="also measure peak memory")
    parser.add_argument("--cases", type=int, nargs="*", help="indices into CASES (default: all)")
    parser.add_argument("--peak-of", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.peak_of is not None:
        return peak_of(args.peak_of, 2)

    load_before = os.getloadavg()
    pipe = kinema.load(args.model)
    pipe(PROMPT, steps=2)  # warm-up
    start = time.perf_counter()
    cal = calibrate(pipe.t2v)
    calibrate_s = time.perf_counter() - start
    rows = []
    for i, case in enumerate(CASES):
        if args.cases and i not in args.cases:
            continue
        plan = plan_for(pipe, case, args.steps)
        fresh = calibrate(pipe.t2v)  # just before: what is left is the model's error
        measured = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            run(pipe, case, args.steps)
            measured.append(time.perf_counter() - start)
        row = {
            "case": case[0],
            "frames": plan.num_frames,
            "windows": len(plan.windows),
            "tokens": plan.largest.tokens,
            "total_gflop": round(plan.total_flops / 1e9, 1),
            "estimated_s": round(plan.seconds(cal), 2),
            "measured_s": round(min(measured), 2),
            "load_average": round(os.getloadavg()[0], 2),
        }
        row["time_error"] = round(row["estimated_s"] / row["measured_s"] - 1, 3)
        row["recalibrated_s"] = round(plan.seconds(fresh), 2)
        row["recalibrated_error"] = round(row["recalibrated_s"] / row["measured_s"] - 1, 3)
        if args.memory:
            out = subprocess.run(
                [sys.executable, __file__, "--peak-of", str(i), "--threads", str(args.threads)],
                check=True, capture_output=True, text=True,
            )  # fmt: skip
            extra = json.loads(out.stdout.strip().splitlines()[-1])["extra_peak_bytes"]
            row["activations_estimated_mib"] = round(plan.activation_bytes / 2**20, 1)
            row["activations_measured_mib"] = round(extra / 2**20, 1)
            row["memory_error"] = round(plan.activation_bytes / extra - 1, 3)
        rows.append(row)
        print(f"{case[0]}: done", file=sys.stderr, flush=True)

    header = ["case", "frames", "windows", "tokens", "total_gflop", "estimated_s", "measured_s",
              "time_error", "recalibrated_s", "recalibrated_error", "load_average"]  # fmt: skip
    if args.memory:
        header += ["activations_estimated_mib", "activations_measured_mib", "memory_error"]
    widths = [max(len(h), *(len(str(r[h])) for r in rows)) for h in header]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    for r in rows:
        print("  ".join(str(r[h]).ljust(w) for h, w in zip(header, widths, strict=True)))
    errors = [abs(r["time_error"]) for r in rows]
    fresh_errors = [abs(r["recalibrated_error"]) for r in rows]
    print(json.dumps({
        "model": args.model, "steps": settings_for(pipe, CASES[0], args.steps).steps,
        "threads": torch.get_num_threads(),
        "calibration": {k: float(f"{v:.4g}") for k, v in cal.__dict__.items()},
        "calibrate_seconds": round(calibrate_s, 2),
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "time_error_max_abs": max(errors),
        "time_error_mean_abs": round(sum(errors) / len(errors), 3),
        "recalibrated_error_max_abs": max(fresh_errors),
        "recalibrated_error_mean_abs": round(sum(fresh_errors) / len(fresh_errors), 3),
        "rows": rows,
    }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
