"""torchrun: two CPU processes (gloo) train in data parallel and end with identical weights."""

import json
import subprocess
import sys

import torch

from conftest import lock_held
from gankit.run import load_checkpoint


def launch(*args, timeout: int = 300) -> subprocess.CompletedProcess:
    # --device cpu: with "auto", both processes would pick CUDA on a machine with one GPU
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "gankit", *args, "--device", "cpu"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def torchrun(*args):
    p = launch(*args)
    assert p.returncode == 0, f"stdout: {p.stdout[-500:]}\nstderr: {p.stderr[-3000:]}"  # stdout: did it finish?
    return json.loads(p.stdout.strip().splitlines()[-1])  # rank 0 prints the summary


def test_two_processes_hold_identical_weights(tmp_path):
    run = tmp_path / "ddp"
    # cs231n-dcgan has BatchNorm (running stats per rank) and conv nets; 6 steps, 2 x 16 images each
    summary = torchrun("train", "cs231n-dcgan", "--steps", "6", "--batch-size", "16", "--out", str(run),
                       "--no-progress", "--set", "threads=1", "--set", "log_every=3", "--set", "checkpoint_every=3")
    assert summary["world_size"] == 2 and summary["steps"] == 6
    fps = summary["rank_fingerprints"]
    assert len(fps) == 2 and fps[0] == fps[1]
    state = load_checkpoint(run)
    cfg = state["config"]
    assert (state["world_size"], cfg.batch_size) == (2, 16)
    assert all(torch.isfinite(v).all() for v in state["G"].values())
    assert len(state["rng"]["ranks"]) == 2 and not torch.equal(*state["rng"]["ranks"])  # own noise per rank
    rows = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [3, 6]  # written once, by rank 0

    summary = torchrun("train", "--resume", str(run), "--steps", "8", "--no-progress")
    assert summary["steps"] == 8 and summary["rank_fingerprints"][0] == summary["rank_fingerprints"][1]


def test_semi_supervised_run_in_two_processes(tmp_path):
    """improved-gan under torchrun: labelled batches are sharded like unlabelled ones, both ranks end
    with the same G, D and moving average of D, and rank 0 alone logs the test errors."""
    run = tmp_path / "ssl"
    summary = torchrun("train", "improved-gan", "--steps", "4", "--batch-size", "20", "--out", str(run),
                       "--no-progress", "--set", "threads=1", "--set", "eval_every=2", "--set", "init_batch=100")
    assert summary["world_size"] == 2 and summary["labelled"] == 100
    assert summary["rank_fingerprints"][0] == summary["rank_fingerprints"][1]
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4] and all(0 <= r["test_errors"] <= 10_000 for r in rows)
    assert "D_ema" in load_checkpoint(run)


def test_a_held_run_folder_stops_every_rank(tmp_path):
    """Another process trains in the folder: rank 0 is refused it, and rank 1 stops with the same error
    instead of waiting for rank 0 in the first collective."""
    run = tmp_path / "held"
    run.mkdir()
    with lock_held(run / ".gankit-lock"):
        p = launch("train", "cs231n-gan", "--steps", "2", "--batch-size", "16", "--out", str(run), "--no-progress",
                   "--set", "threads=1", timeout=100)
    assert p.returncode != 0
    assert p.stderr.count("another gankit process") >= 2, p.stderr[-3000:]  # one line from each rank
    assert sorted(f.name for f in run.iterdir()) == [".gankit-lock"]  # nothing written


STOP_RANK_0 = """
import os, signal, sys
import gankit.train
from gankit.cli import main
if os.environ["RANK"] == "0":  # the Ctrl-C reaches rank 0 alone, in step 2 (another node's Ctrl-C, or one that lands late)
    make_step = gankit.train.make_step
    def patched(state):
        step_fn = make_step(state)
        def run(i):
            if i == 1:
                os.kill(os.getpid(), signal.SIGINT)
            return step_fn(i)
        return run
    gankit.train.make_step = patched
sys.exit(main(sys.argv[1:]))
"""


def test_a_ctrl_c_that_reaches_one_rank_stops_every_rank_at_the_same_step(tmp_path):
    """The ranks agree on the step to stop after: none waits forever for a peer that stopped, and the
    checkpoint is whole and resumable."""
    script, run = tmp_path / "stop_rank_0.py", tmp_path / "stopped"
    script.write_text(STOP_RANK_0)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
           "train", "cs231n-gan", "--steps", "6", "--batch-size", "16", "--out", str(run), "--no-progress",
           "--device", "cpu", "--set", "threads=1", "--set", "log_every=1"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=200)
    assert p.returncode != 0
    assert "interrupted at step 2; checkpoint saved. Continue with: torchrun --nproc_per_node 2 -m gankit train " \
           f"--resume {run}" in p.stderr, p.stderr[-3000:]
    assert p.stderr.count("interrupted at step") == 1  # rank 0 says it for the job
    assert load_checkpoint(run)["step"] == 2
    summary = torchrun("train", "--resume", str(run), "--steps", "4", "--no-progress")
    assert summary["steps"] == 4 and summary["rank_fingerprints"][0] == summary["rank_fingerprints"][1]
