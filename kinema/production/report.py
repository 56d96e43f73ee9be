"""The quality report of a produced clip: reference-free video metrics of the output, and prompt
adherence (ShapesBench's scores) of the base clip when the prompt is in the Shapes grammar."""

from __future__ import annotations

import dataclasses

import numpy as np

from kinema.eval.video_metrics import video_quality


def quality_report(frames: np.ndarray, fps: float, prompt: str, base_frames: np.ndarray | None = None,
                   base_fps: float | None = None) -> dict:  # fmt: skip
    """flicker, warping_error and motion_magnitude of the output (two frames or more), and
    `adherence`: ShapesBench's per-dimension scores of the base frames (the detector and the
    suite are calibrated at the model's own size and rate), or None when the prompt does not
    describe a Shapes-world scene. An empty report for a single frame."""
    from kinema.eval.shapesbench import score_clip
    from kinema.world.spec import WorldError

    if len(frames) < 2:
        return {}
    report: dict = {
        k: round(float(v), 6) for k, v in dataclasses.asdict(video_quality(frames)).items()
    }
    base = frames if base_frames is None else base_frames
    base_fps = fps if base_fps is None else base_fps
    try:
        scores = score_clip(base, prompt, base_fps)
    except WorldError:
        report["adherence"] = None
    else:
        report["adherence"] = {k: round(float(v), 4) for k, v in scores.items()
                               if k not in ("flicker", "warping_error")}  # fmt: skip
        report["adherence_of"] = f"{base.shape[2]}x{base.shape[1]} at {base_fps:g} fps"
    return report
