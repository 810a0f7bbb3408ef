"""DiffAugment (Zhao et al. 2020): random colour, translation and cutout applied to every image D
sees, real and generated alike, with differentiable operations so that G learns through them.

With little data D memorises the training images; augmenting only the real ones would teach G to
produce augmented images. Augmenting both, inside the graph, lets D see many more variations of
each real image while G's gradient still flows through the same transformations. Each image gets
its own random parameters, drawn from the device's RNG stream (so a resumed run draws the same).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def diff_augment(x: Tensor, policy: str, generator: torch.Generator | None = None) -> Tensor:
    """x (N, C, H, W) in [-1, 1] -> the same images transformed by `policy` ("color,translation,cutout"
    or a part of it; "" is the identity)."""
    for name in filter(None, policy.split(",")):
        x = TRANSFORMS[name](x, generator)
    return x


def _rand(x: Tensor, generator, *shape: int) -> Tensor:
    return torch.rand(x.shape[0], *shape, dtype=x.dtype, device=x.device, generator=generator)


def color(x: Tensor, generator=None) -> Tensor:
    """Brightness ± 0.5, saturation × [0, 2), contrast × [0.5, 1.5): the values of the authors' code,
    which also applies them to images in [-1, 1]."""
    x = x + (_rand(x, generator, 1, 1, 1) - 0.5)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (_rand(x, generator, 1, 1, 1) * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_rand(x, generator, 1, 1, 1) + 0.5) + mean


def translation(x: Tensor, generator=None, ratio: float = 0.125) -> Tensor:
    """Shift each image by up to ratio·size pixels in x and y, filling with zeros as the paper's code
    does (mid-grey in [-1, 1])."""
    _, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = (_rand(x, generator) * (2 * sh + 1)).long() - sh
    dx = (_rand(x, generator) * (2 * sw + 1)).long() - sw
    rows = (torch.arange(h, device=x.device)[None, :] + dy[:, None]).clamp(-1, h)  # (N, H), -1 and h: padding
    cols = (torch.arange(w, device=x.device)[None, :] + dx[:, None]).clamp(-1, w)
    padded = F.pad(x, (1, 1, 1, 1))
    idx_r = (rows + 1)[:, None, :, None].expand(-1, x.shape[1], -1, w + 2)
    x = padded.gather(2, idx_r)
    idx_c = (cols + 1)[:, None, None, :].expand(-1, x.shape[1], h, -1)
    return x.gather(3, idx_c)


def cutout(x: Tensor, generator=None, ratio: float = 0.5) -> Tensor:
    """Zero a square of ratio·size at a random place in each image (it may stick out of the image)."""
    _, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = (_rand(x, generator) * (h + 1 - ch % 2)).long()
    cx = (_rand(x, generator) * (w + 1 - cw % 2)).long()
    ys = torch.arange(h, device=x.device)[None, :]
    xs = torch.arange(w, device=x.device)[None, :]
    inside_y = (ys >= (cy - ch // 2)[:, None]) & (ys < (cy - ch // 2 + ch)[:, None])  # (N, H)
    inside_x = (xs >= (cx - cw // 2)[:, None]) & (xs < (cx - cw // 2 + cw)[:, None])  # (N, W)
    keep = ~(inside_y[:, :, None] & inside_x[:, None, :])
    return x * keep[:, None].to(x.dtype)


TRANSFORMS = {"color": color, "translation": translation, "cutout": cutout}
