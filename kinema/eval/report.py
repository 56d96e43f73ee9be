"""ShapesBench reports: results.json, plots, contact sheets, report.md and report.html."""

from __future__ import annotations

import html
import json
from dataclasses import asdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from kinema.eval.shapesbench import (  # noqa: E402
    ACCURACY_DIMENSIONS,
    QUALITY_DIMENSIONS,
    BenchSettings,
    ClipResult,
    summarize,
)
from kinema.io.images import contact_sheet, save_png  # noqa: E402

REFERENCE = "groundtruth"


def comparison_rows(summaries: dict[str, dict[str, float]]) -> list[tuple[str, list[str]]]:
    """Table rows (dimension, one cell per generator); quality cells carry the ratio to the
    ground truth when it is in the run."""
    rows = []
    ref = summaries.get(REFERENCE, {})
    for dim in ACCURACY_DIMENSIONS + QUALITY_DIMENSIONS:
        if not any(dim in s for s in summaries.values()):
            continue
        cells = []
        for s in summaries.values():
            if dim not in s:
                cells.append("-")
            elif dim in ACCURACY_DIMENSIONS:
                cells.append(f"{100 * s[dim]:.1f}%")
            else:
                cell = f"{s[dim]:.4g}"
                if ref.get(dim):
                    cell += f" ({s[dim] / ref[dim]:.2f}x)"
                cells.append(cell)
        rows.append((dim, cells))
    return rows


def _plot_scores(summaries: dict[str, dict[str, float]], path: Path) -> None:
    dims = [d for d in ACCURACY_DIMENSIONS if any(d in s for s in summaries.values())]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(13, 4.2), gridspec_kw={"width_ratios": [4, 1.3]})
    width = 0.8 / max(len(summaries), 1)
    for k, (name, s) in enumerate(summaries.items()):
        xs = np.arange(len(dims)) + k * width
        ax.bar(xs, [100 * s.get(d, np.nan) for d in dims], width, label=name)
    ax.set_xticks(np.arange(len(dims)) + width * (len(summaries) - 1) / 2, dims, rotation=30)
    ax.set_ylabel("score (%)")
    ax.set_ylim(0, 105)
    ax.set_title("ShapesBench: higher is better")
    ax.legend(loc="lower left", fontsize=8)
    names = list(summaries)
    ref = summaries.get(REFERENCE, {})
    for j, dim in enumerate(QUALITY_DIMENSIONS):
        values = [summaries[n].get(dim, np.nan) for n in names]
        if ref.get(dim):  # ratios put metrics of very different scales on one axis
            values = [v / ref[dim] for v in values]
        ax2.bar(np.arange(len(names)) + j * 0.4, values, 0.4, label=dim)
    ax2.set_yscale("log")
    ax2.set_xticks(np.arange(len(names)) + 0.2, names, rotation=30, fontsize=8)
    ax2.set_title(f"x {REFERENCE}, lower is better" if ref else "lower is better", fontsize=10)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(
    out_dir: str | Path,
    runs: dict[str, list[ClipResult]],
    examples: dict[str, list[tuple[str, np.ndarray]]],
    settings: BenchSettings,
) -> dict[str, dict[str, float]]:
    """Write the report files; returns the per-generator summaries."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summaries = {name: summarize(results) for name, results in runs.items()}
    payload = {
        "settings": asdict(settings),
        "summaries": summaries,
        "clips": {name: [asdict(r) for r in results] for name, results in runs.items()},
    }
    (out / "results.json").write_text(json.dumps(payload, indent=1))
    _plot_scores(summaries, out / "scores.png")
    sheets = {}
    for name, clips in examples.items():
        if clips:
            labels, frames = zip(*clips, strict=True)
            sheets[name] = f"contact_{Path(name).name or 'model'}.png"  # a model folder is a path
            save_png(
                out / sheets[name], contact_sheet(list(frames), list(labels), frames_per_clip=9)
            )
    rows = comparison_rows(summaries)
    names = list(summaries)
    md = [
        "# ShapesBench report",
        "",
        f"{settings.width}x{settings.height}, {settings.num_frames} frames at {settings.fps:g} fps; "
        f"clips per generator: {', '.join(f'{n} {len(r)}' for n, r in runs.items())}.",
        "",
        "| dimension | " + " | ".join(names) + " |",
        "|---" * (len(names) + 1) + "|",
        *[f"| {dim} | " + " | ".join(cells) + " |" for dim, cells in rows],
        "",
        "![scores](scores.png)",
        "",
        *[f"## {name}\n\n![{name}]({sheet})\n" for name, sheet in sheets.items()],
    ]
    (out / "report.md").write_text("\n".join(md))
    table = "".join(
        f"<tr><td>{html.escape(dim)}</td>"
        + "".join(f"<td>{html.escape(c)}</td>" for c in cells)
        + "</tr>"
        for dim, cells in rows
    )
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    sheet_html = "".join(
        f"<h2>{html.escape(n)}</h2><img src='{html.escape(s)}' alt='{html.escape(n)} clips'>"
        for n, s in sheets.items()
    )
    (out / "report.html").write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>ShapesBench</title>"
        "<style>body{font-family:sans-serif;margin:2em;background:#fafafa}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}"
        "td:first-child{text-align:left}img{max-width:100%}</style></head><body>"
        f"<h1>ShapesBench report</h1><p>{html.escape(md[2])}</p>"
        f"<table><tr><th>dimension</th>{head}</tr>{table}</table>"
        f"<p><img src='scores.png' alt='scores'></p>{sheet_html}</body></html>"
    )
    return summaries
