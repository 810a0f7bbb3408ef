import contextlib
import subprocess
import sys

import pytest
import torch

from gankit import data as datasets

_real_load = datasets.load  # as imported, before any test patches it


def fake_images(n: int, c: int, size: int, seed: int = 0, name: str = "fake") -> datasets.Dataset:
    """A small random uint8 image set, so recipe tests don't pay for loading and resizing MNIST;
    `name` is the dataset it stands in for, which a run's config records."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, c, size, size), generator=g, dtype=torch.uint8)
    y = torch.arange(n) % 10  # ten balanced classes, for the semi-supervised recipes
    return datasets.Dataset(name, x, y, "image", [str(i) for i in range(10)])


@pytest.fixture
def tiny_data(monkeypatch):
    """Replace dataset loading in the trainer with a tiny in-memory set of the requested shape."""

    def load(spec, split="train", data_dir=None, image_size=None, channels=None, download=True, seed=0):
        if spec.startswith("toy:"):
            return real_load(spec, split, seed=seed)
        return fake_images(256, channels or 1, image_size or 28, name=spec)

    real_load = datasets.load
    monkeypatch.setattr("gankit.data.load", load)
    return load


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """(recipe, **config overrides) -> a run folder trained for 2 steps on tiny_data's images (toy: its points),
    trained on first use and shared by the modules that only read runs (test_export, test_demo)."""
    from test_recipes import small_config
    from gankit.train import train

    runs = {}

    def load(spec, split="train", data_dir=None, image_size=None, channels=None, download=True, seed=0):
        if spec.startswith("toy:"):
            return _real_load(spec, split, seed=seed)
        return fake_images(256, channels or 1, image_size or 28, name=spec)

    def get(name, **over):
        key = (name, tuple(sorted(over.items())))
        if key not in runs:
            folder = tmp_path_factory.mktemp(name)
            cfg = small_config(name, folder, **{"sample_every": 2, "log_every": 2, "checkpoint_every": 2, **over})
            with pytest.MonkeyPatch.context() as mp:  # the tiny_data fixture, for a session's runs
                mp.setattr("gankit.data.load", load)
                train(cfg, progress=False)
            runs[key] = folder / name
        return runs[key]

    return get


@contextlib.contextmanager
def lock_held(lock):
    """Another process holds the run folder's lock file `lock` (as a training process would) until the block ends."""
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
                               "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(120)",
                               str(lock)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        yield
    finally:
        holder.kill()
        holder.wait()
