"""Pictures of a generator: image grids and, for 2-D data, scatter plots; written as PNG with Pillow."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from gankit.errors import GankitError
from gankit.files import write_atomic


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] (float) -> uint8 in [0, 255]; uint8 input passes through."""
    if x.dtype == torch.uint8:
        return x
    return ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def make_grid(x: torch.Tensor, nrow: int | None = None, pad: int = 2) -> np.ndarray:
    """(N, C, H, W) images -> one (rows*H', cols*W', C) uint8 array, `pad` pixels between tiles."""
    x = to_uint8(x).cpu()
    n, c, h, w = x.shape
    cols = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    grid = torch.zeros(c, rows * (h + pad) + pad, cols * (w + pad) + pad, dtype=torch.uint8)
    for i in range(n):
        r, q = divmod(i, cols)
        grid[:, pad + r * (h + pad): pad + r * (h + pad) + h, pad + q * (w + pad): pad + q * (w + pad) + w] = x[i]
    return grid.permute(1, 2, 0).numpy()


def _save(img: Image.Image, path: str | os.PathLike) -> None:
    path = Path(path)
    if path.is_dir():
        raise GankitError(f"{path}: is a folder; give a file name for the PNG (e.g. {path / 'grid.png'})")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise GankitError(f"{path}: cannot write the PNG (a file, not a folder, is in the way)") from None
    except OSError as e:
        raise GankitError(f"{path}: cannot write the PNG ({e.strerror or e})") from None
    write_atomic(path, lambda tmp: img.save(tmp, format="PNG"))  # a reader (or a crash) never sees half a PNG


def save_grid(x: torch.Tensor, path: str | os.PathLike, nrow: int | None = None) -> None:
    """Write images (float in [-1, 1] or uint8) as one PNG grid."""
    a = make_grid(x, nrow)
    _save(Image.fromarray(a[:, :, 0] if a.shape[2] == 1 else a), path)


def save_points(fake: torch.Tensor, path: str | os.PathLike, real: torch.Tensor | None = None,
                size: int = 400, extent: float | None = None) -> None:
    """Scatter plot of 2-D samples (orange) over real points (blue), on a white square."""
    fake = fake.detach().float().cpu()
    pts = fake if real is None else torch.cat([real.float().cpu(), fake])
    lim = extent or max(1.0, float(pts.abs().max()) * 1.1)
    img = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(img)

    def px(p):
        return (p + lim) / (2 * lim) * (size - 1)

    for points, colour in ((real, (70, 110, 200)), (fake, (240, 130, 30))):
        if points is None:
            continue
        for x, y in px(points.float().cpu()).tolist():
            draw.ellipse((x - 1.5, size - 1 - y - 1.5, x + 1.5, size - 1 - y + 1.5), fill=colour)
    _save(img, path)
