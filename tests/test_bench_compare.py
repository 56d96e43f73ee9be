"""`kinema bench compare`: paired differences of two ShapesBench runs with bootstrap intervals."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from kinema.cli import app
from kinema.eval.compare import CompareError, compare_runs, load_clips


def clips(size_scores, colour=1.0, seeds=range(20)):
    return {
        ("p", s): {"color": colour, "size": size, "flicker": 1.0}
        for s, size in zip(seeds, size_scores, strict=True)
    }


def write_run(path, name, clip_map):
    rows = [
        {"prompt_id": p, "prompt": "x", "seed": s, "scores": sc} for (p, s), sc in clip_map.items()
    ]
    path.mkdir(parents=True, exist_ok=True)
    (path / "results.json").write_text(json.dumps({"clips": {"groundtruth": [], name: rows}}))
    return path


def test_a_consistent_drop_is_significant_and_one_flipped_clip_is_not():
    a = clips([1.0] * 20)
    dropped = compare_runs(a, clips([0.0] * 6 + [1.0] * 14))[0]
    size = next(r for r in dropped if r.dimension == "size")
    assert size.difference == pytest.approx(-30.0) and size.changed == 6 and size.significant
    assert size.high < 0 and size.pairs == 20
    one = compare_runs(a, clips([0.0] + [1.0] * 19))[0]
    size = next(r for r in one if r.dimension == "size")
    assert size.difference == pytest.approx(-5.0) and not size.significant  # 0 in the interval
    colour = next(r for r in one if r.dimension == "color")
    assert colour.changed == 0 and colour.low == colour.high == 0.0


def test_pooled_takes_accuracies_only_and_only_shared_clips():
    a = clips([1.0] * 20)
    b = clips([0.0] * 10, seeds=range(10))  # half the seeds, all wrong on size
    rows, pooled = compare_runs(a, b)
    assert pooled.pairs == 20  # 10 shared clips x (colour, size); flicker is not an accuracy
    assert pooled.difference == pytest.approx(-50.0)
    flicker = next(r for r in rows if r.dimension == "flicker")
    assert flicker.mean_a == 1.0 and flicker.difference == 0.0  # in its own units
    with pytest.raises(CompareError, match="share no"):
        compare_runs(a, clips([1.0] * 5, seeds=range(100, 105)))


def test_bench_compare_command(tmp_path):
    a = write_run(tmp_path / "a", "kinema-tiny", clips([1.0] * 20))
    b = write_run(tmp_path / "b", "kinema-tiny (cache 0.2)", clips([0.0] * 6 + [1.0] * 14))
    result = CliRunner().invoke(app, ["bench", "compare", str(a), str(b / "results.json")])
    assert result.exit_code == 0, result.output
    size_row = next(line for line in result.output.splitlines() if "size" in line)
    assert "-30.0 *" in size_row and "100.0%" in size_row and "70.0%" in size_row
    assert "kinema-tiny (cache 0.2)" in result.output


def test_bench_compare_refuses_what_it_cannot_read(tmp_path):
    (tmp_path / "notes.json").write_text("{}")
    two = tmp_path / "two"
    two.mkdir()
    (two / "results.json").write_text(json.dumps({"clips": {"m1": [], "m2": []}}))
    with pytest.raises(CompareError, match="no such file"):
        load_clips(tmp_path / "missing")
    with pytest.raises(CompareError, match="not a ShapesBench results.json"):
        load_clips(tmp_path / "notes.json")
    with pytest.raises(CompareError, match="holds m1, m2: name the generator"):
        load_clips(two)
    with pytest.raises(CompareError, match="no generator 'm3'"):
        load_clips(two, "m3")
    assert load_clips(two, "m2") == ("m2", {})
