"""How often a progress bar redraws: twice a second where someone watches it (a terminal, a
notebook); every 30 s where stderr goes to a file or a pipe (nohup, Slurm, CI), so that a long
run's log holds a few hundred redraws, not thousands."""

import sys


def bar_intervals() -> dict[str, float]:
    """tqdm's mininterval and maxinterval for gankit's bars (training, evaluation, Inception
    features, loading a folder of images): tqdm's monitor thread redraws a bar that has not been
    drawn for maxinterval (10 s by default), so into a file both are 30 s."""
    every = 0.5 if sys.stderr.isatty() or "ipykernel" in sys.modules else 30.0
    return {"mininterval": every, "maxinterval": max(every, 10.0)}
