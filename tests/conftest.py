import pytest
import torch

from gankit import data as datasets


def fake_images(n: int, c: int, size: int, seed: int = 0) -> datasets.Dataset:
    """A small random uint8 image set, so recipe tests don't pay for loading and resizing MNIST."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, c, size, size), generator=g, dtype=torch.uint8)
    y = torch.arange(n) % 10  # ten balanced classes, for the semi-supervised recipes
    return datasets.Dataset("fake", x, y, "image", [str(i) for i in range(10)])


@pytest.fixture
def tiny_data(monkeypatch):
    """Replace dataset loading in the trainer with a tiny in-memory set of the requested shape."""

    def load(spec, split="train", data_dir=None, image_size=None, channels=None, download=True, seed=0):
        if spec.startswith("toy:"):
            return real_load(spec, split, seed=seed)
        return fake_images(256, channels or 1, image_size or 28)

    real_load = datasets.load
    monkeypatch.setattr("gankit.data.load", load)
    return load
