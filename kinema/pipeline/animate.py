"""One photo to video: try several motion strengths, keep the one that moves most while staying
coherent. Coherence is the warping error (DIS flow, occlusion-masked), motion is the mean flow
magnitude, both from kinema.eval.video_metrics, so the choice is measured, not guessed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kinema.eval.video_metrics import motion_magnitude, warping_error

DEFAULT_MOTIONS = (50.0, 127.0, 200.0)
RELATIVE_BUDGET = 1.5  # without --max-warp: within 1.5x the steadiest candidate's warping error


@dataclass
class Candidate:
    motion: float
    video: object  # kinema.api.Video
    warping_error: float
    motion_magnitude: float


@dataclass
class Animation:
    candidates: list[Candidate]
    budget: float
    chosen: int
    within_budget: bool

    @property
    def best(self) -> Candidate:
        return self.candidates[self.chosen]

    def table(self) -> list[dict]:
        return [
            {
                "motion": c.motion,
                "warping_error": c.warping_error,
                "motion_magnitude": c.motion_magnitude,
                "within_budget": c.warping_error <= self.budget,
                "chosen": i == self.chosen,
            }
            for i, c in enumerate(self.candidates)
        ]


def parse_motions(text: str) -> tuple[float, ...]:
    """'50,127,200' -> (50.0, 127.0, 200.0), each 0..255."""
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"motion settings must be numbers like 50,127,200, got {text!r}") from None
    if not values or any(not 0 <= v <= 255 for v in values):
        raise ValueError(f"motion settings must be 0..255, got {text!r}")
    return values


def choose(candidates: list[Candidate], max_warp: float | None = None) -> Animation:
    """The candidate with the most motion within the warping budget (the steadiest one when none
    is within it)."""
    steadiest = min(range(len(candidates)), key=lambda i: candidates[i].warping_error)
    budget = (
        max_warp if max_warp is not None else RELATIVE_BUDGET * candidates[steadiest].warping_error
    )
    ok = [i for i, c in enumerate(candidates) if c.warping_error <= budget]
    if not ok:
        return Animation(candidates, budget, steadiest, False)
    return Animation(
        candidates, budget, max(ok, key=lambda i: candidates[i].motion_magnitude), True
    )


def animate(
    pipe,
    image: np.ndarray,
    prompt: str,
    motions: tuple[float, ...] = DEFAULT_MOTIONS,
    max_warp: float | None = None,
    on_candidate=None,
    **kw,
) -> Animation:
    """One image-to-video clip per motion setting (same seed), measured and chosen from."""
    if not pipe.t2v.dit.cfg.micro_conditioning:
        raise ValueError(f"model {pipe.t2v.name} has no motion input, so it cannot animate")
    candidates = []
    for m in motions:
        video = pipe(prompt, image=image, motion=m, **kw)
        candidates.append(
            Candidate(m, video, warping_error(video.frames), motion_magnitude(video.frames))
        )
        if on_candidate is not None:
            on_candidate(candidates[-1])
    return choose(candidates, max_warp)


def plot_tradeoff(result: Animation, path: str | Path) -> Path:
    """Motion magnitude against warping error, one point per setting, the budget as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.6), dpi=120)
    for i, c in enumerate(result.candidates):
        chosen = i == result.chosen
        ax.scatter(c.warping_error, c.motion_magnitude, s=60 if chosen else 30,
                   color="tab:red" if chosen else "tab:blue", zorder=3)  # fmt: skip
        ax.annotate(f"motion {c.motion:g}" + (" (chosen)" if chosen else ""),
                    (c.warping_error, c.motion_magnitude), textcoords="offset points",
                    xytext=(5, 5), fontsize=8)  # fmt: skip
    ax.axvline(result.budget, color="gray", linestyle="--", label="warping budget")
    ax.set_xlabel("warping error (lower: more coherent)")
    ax.set_ylabel("motion magnitude (px / frame)")
    ax.set_title("motion vs coherence")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
