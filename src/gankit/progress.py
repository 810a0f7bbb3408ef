"""How often a progress bar redraws: twice a second where someone watches it (a terminal, a
notebook); every 30 s where stderr goes to a file or a pipe (nohup, Slurm, CI), so that a long
run's log holds a few hundred redraws, not thousands."""

import sys


def bar_interval() -> float:
    """tqdm's mininterval for gankit's bars (training, evaluation, loading a folder of images)."""
    return 0.5 if sys.stderr.isatty() or "ipykernel" in sys.modules else 30.0
