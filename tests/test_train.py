"""Training under torchrun: 2 processes on gloo, a few steps of the real VAE recipe."""

import json
import os
import socket
import subprocess
import sys


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_training_keeps_ranks_in_sync_and_learns(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
        "-m", "kinema.cli", "train", "vae", "-o", str(tmp_path / "run"), "--steps", "40", "--batch-size", "2",
        "--crop", "16", "--lr", "2e-3", "--log-every", "4",
    ]  # fmt: skip
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 40
    assert summary["ranks_max_weight_diff"] == 0.0
    rows = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    first, last = sum(r["loss"] for r in rows[:2]) / 2, sum(r["loss"] for r in rows[-2:]) / 2
    assert last < 0.8 * first, (first, last)
    for name in ("vae.safetensors", "state.pt", "loss.png"):
        assert (tmp_path / "run" / name).stat().st_size > 0


def test_training_resumes_from_its_checkpoint(tmp_path):
    base = [sys.executable, "-m", "kinema.cli", "train", "vae", "-o", str(tmp_path / "run"), "--batch-size", "1",
            "--crop", "16", "--log-every", "5"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([*base, "--steps", "10"], env=env, check=True, capture_output=True, timeout=300)
    result = subprocess.run(
        [*base, "--steps", "20"], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "resumed vae" in result.stdout and "at step 10" in result.stdout
    rows = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [5, 10, 15, 20]
    # wall time carries across the resume, so --minutes and the LR schedule count the whole run
    seconds = [r["seconds"] for r in rows]
    assert seconds == sorted(seconds), seconds


def test_dit_training_goes_on_from_given_weights(tmp_path):
    """`train dit --init` starts from shipped weights (their config wins, plus the motion and fps inputs
    when they lack it) and moves them."""
    import dataclasses

    from kinema.models import MODELS, load_dit

    shipped = MODELS["kinema-tiny"]
    cmd = [sys.executable, "-m", "kinema.cli", "train", "dit", "--vae", str(shipped / "vae.safetensors"),
           "-o", str(tmp_path / "run"), "--init", str(shipped / "dit.safetensors"), "--steps", "3",
           "--batch-size", "1", "--pool", "16", "--dim", "32", "--layers", "1"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    before, after = (
        load_dit(shipped / "dit.safetensors"),
        load_dit(tmp_path / "run" / "dit.safetensors"),
    )
    # not the --dim 32 --layers 1 of the command line
    assert after.cfg == dataclasses.replace(before.cfg, micro_conditioning=True)
    old, new = before.state_dict(), after.state_dict()
    diffs = [(new[k] - v).abs().max().item() for k, v in old.items()]
    assert 0 < max(diffs) < 0.05, max(diffs)
    assert (
        set(new) - set(old)
        == {k for k in new if k.startswith(("motion_embedding.", "fps_embedding."))}
        != set()
    )
