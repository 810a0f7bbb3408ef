"""A run's generator alone, as one file another program can run: ONNX or TorchScript.

The file holds G (the moving average of its weights where the run kept one) in float32 and eval
mode, with G's output mapped to the images gankit shows, in [-1, 1] (a tlx-mlp G's raw output is
mapped by gankit.data.to_signed inside the exported model). Beside the network it records its
contract, what a caller needs to draw samples: the noise z (dimension and distribution), the class
labels y of a conditional G, and the output's shape and range. ONNX keeps the contract in the
model's metadata_props (a JSON entry "gankit" and a few plain keys); TorchScript in an extra file
gankit.json of the archive, which `load_torchscript` reads back.

ONNX uses torch's torch.export-based exporter (asked for by name: the default only since torch
2.9; it needs torch >= 2.6 and the `onnxscript` package: pip install 'gankit[export]') at opset
18, which onnxruntime and onnxruntime-web run. The batch dimension is dynamic in both formats.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import re
import warnings
from pathlib import Path

import torch
from torch import nn

from gankit.data import to_signed
from gankit.errors import GankitError
from gankit.files import write_atomic
from gankit.recipes import networks
from gankit.run import check_output, first_line, load_checkpoint, load_into
from gankit.sample import generator_weights, has_generator

FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}  # format -> the usual file suffix
OPSET = 18
ONNX_TORCH = (2, 6)  # the oldest torch whose torch.onnx.export takes dynamo=True with dynamic_shapes and external_data
CONTRACT_FILE = "gankit.json"  # TorchScript: the contract's name among the archive's extra files
NOISE = {"normal": "N(0, 1)", "uniform": "U[0, 1)", "uniform_signed": "U[-1, 1)"}  # as gankit.sample.sample_noise draws
EXAMPLE_BATCH = 2  # the batch traced at export; torch.export treats a batch of 1 as a constant


class Images(nn.Module):
    """G(z) as the images gankit shows: in [-1, 1] for every run (to_signed), points as they are."""

    def __init__(self, G: nn.Module, real_range: str):
        super().__init__()
        self.G, self.real_range = G, real_range

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return to_signed(self.G(z), self.real_range)


class ConditionalImages(Images):
    """G(z, y) likewise, y the int64 class labels."""

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return to_signed(self.G(z, y), self.real_range)


def contract(cfg, weights: str, step: int) -> dict:
    """What a caller of the exported G needs to know: its inputs, their distribution, its output."""
    points = len(cfg.data_shape) == 1
    inputs = [{"name": "z", "shape": ["batch", cfg.noise_dim], "dtype": "float32",
               "distribution": NOISE[cfg.noise]}]
    if cfg.conditional:
        inputs.append({"name": "y", "shape": ["batch"], "dtype": "int64", "values": f"0..{cfg.num_classes - 1}",
                       "note": "other values are undefined (onnxruntime reads -1 as the last class)"})
    return {"gankit_export": 1, "recipe": cfg.recipe, "dataset": cfg.dataset, "step": step, "weights": weights,
            "noise": cfg.noise, "noise_dim": cfg.noise_dim, "noise_distribution": NOISE[cfg.noise],
            "num_classes": cfg.num_classes if cfg.conditional else 0,
            "inputs": inputs,
            "output": {"name": "x", "shape": ["batch", *cfg.data_shape], "dtype": "float32",
                       "kind": "points" if points else "images", "layout": "(x, y)" if points else "NCHW",
                       "range": None if points else [-1.0, 1.0]}}


def export(run_or_checkpoint: str | os.PathLike, out: str | os.PathLike | None = None, fmt: str | None = None,
           ema: bool = True) -> Path:
    """Write the run's G (its moving average, if kept, unless ema=False) to `out` as `fmt` (onnx or
    torchscript; None: the one `out`'s suffix names, else onnx) with its contract; -> the path. The
    file is replaced whole or not at all."""
    by_suffix = {".pth": "torchscript", **{suffix: name for name, suffix in FORMATS.items()}}
    named = by_suffix.get(Path(out).suffix.lower()) if out else None
    fmt = fmt or named or "onnx"
    if fmt not in FORMATS:
        raise GankitError(f"--format {fmt}: expected one of {', '.join(FORMATS)}")
    if named and named != fmt:
        raise GankitError(f"-o {out}: a {Path(out).suffix} file is read as {named}, but --format is {fmt}; "
                          f"give a name ending in {FORMATS[fmt]}")
    out = Path(out or f"generator{FORMATS[fmt]}")
    if not out.parent.is_dir():
        raise GankitError(f"-o {out}: the folder {out.parent} does not exist")
    if out.is_dir():
        raise GankitError(f"-o {out}: is a folder; give a file name")
    check_output(out, run_or_checkpoint)
    if fmt == "onnx" and tuple(int(v) for v in re.findall(r"\d+", torch.__version__)[:2]) < ONNX_TORCH:
        raise GankitError(f"ONNX export needs torch >= {'.'.join(map(str, ONNX_TORCH))} (its torch.export-based "
                          f"exporter, with dynamic shapes); this is torch {torch.__version__}: upgrade torch, "
                          f"or export --format torchscript")
    if fmt == "onnx" and importlib.util.find_spec("onnxscript") is None:  # what torch's exporter needs
        raise GankitError("ONNX (gankit export --format onnx, and gankit demo) needs the onnxscript package: "
                          "pip install 'gankit[export]' (or pip install onnxscript)")
    model, inputs, info = _exportable(run_or_checkpoint, ema)
    if fmt == "onnx":
        _onnx(model, inputs, info, out)
    else:
        _torchscript(model, inputs, info, out)
    return out


def load_torchscript(path: str | os.PathLike) -> tuple[torch.jit.ScriptModule, dict]:
    """-> (module, contract) of a file written by export(..., fmt="torchscript"), on the CPU."""
    extra = {CONTRACT_FILE: ""}
    try:
        with _quiet():
            module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except (OSError, RuntimeError, ValueError) as e:
        raise GankitError(f"{path}: not a readable TorchScript file ({first_line(e)})") from None
    if not extra[CONTRACT_FILE]:
        raise GankitError(f"{path}: a TorchScript file without {CONTRACT_FILE}; not exported by gankit")
    return module, json.loads(extra[CONTRACT_FILE])


def _exportable(run_or_checkpoint, ema: bool) -> tuple[nn.Module, tuple, dict]:
    """-> (the module to export, example inputs, contract). Loads G alone as gankit.sample does."""
    state = load_checkpoint(run_or_checkpoint)
    cfg = state["config"]
    has_generator(cfg, run_or_checkpoint, "export")
    weights = generator_weights(state, ema)
    G, _ = networks(cfg)
    load_into(G, state, weights, run_or_checkpoint)
    G = G.float().eval().requires_grad_(False)
    g = torch.Generator().manual_seed(0)
    z = torch.randn(EXAMPLE_BATCH, cfg.noise_dim, generator=g)
    if cfg.conditional:
        model = ConditionalImages(G, cfg.real_range)
        inputs = (z, torch.arange(EXAMPLE_BATCH, dtype=torch.int64) % cfg.num_classes)
    else:
        model, inputs = Images(G, cfg.real_range), (z,)
    return model.eval(), inputs, contract(cfg, weights, state.get("step", 0))


def _onnx(model: nn.Module, inputs: tuple, info: dict, out: Path) -> None:
    batch = torch.export.Dim("batch")
    names = ["z", "y"][:len(inputs)]
    try:
        with torch.no_grad(), _quiet():
            program = torch.onnx.export(model, inputs, input_names=names, output_names=["x"], opset_version=OPSET,
                                        dynamo=True, dynamic_shapes={n: {0: batch} for n in names},
                                        external_data=False, verbose=False)
    except Exception as e:  # the exporter's own failures are long traces; one line names the network
        raise GankitError(f"{info['recipe']}: its G cannot be exported to ONNX ({first_line(e)})") from None
    meta = program.model.metadata_props
    meta["gankit"] = json.dumps(info)
    meta.update({"noise": info["noise"], "noise_dim": str(info["noise_dim"]),
                 "noise_distribution": info["noise_distribution"], "num_classes": str(info["num_classes"]),
                 "output_shape": json.dumps(info["output"]["shape"]),
                 "output_range": json.dumps(info["output"]["range"])})
    write_atomic(out, lambda tmp: program.save(str(tmp), external_data=False), (OSError, RuntimeError, ValueError),
                 "; the previous file, if any, is kept")


def _torchscript(model: nn.Module, inputs: tuple, info: dict, out: Path) -> None:
    try:
        with torch.no_grad(), _quiet():
            module = torch.jit.trace(model, inputs, check_trace=False)
    except Exception as e:
        raise GankitError(f"{info['recipe']}: its G cannot be traced to TorchScript ({first_line(e)})") from None
    extra = {CONTRACT_FILE: json.dumps(info, indent=1)}
    with _quiet():
        write_atomic(out, lambda tmp: torch.jit.save(module, str(tmp), _extra_files=extra), (OSError, RuntimeError),
                     "; the previous file, if any, is kept")


@contextlib.contextmanager
def _quiet():
    """Silence what torch says while exporting that asks nothing of the user: torch.jit's deprecation
    (the user chose TorchScript), the ONNX exporter's notes on torchvision ops and its own internals.
    A TracerWarning (a shape baked into a trace) still shows."""
    log = logging.getLogger("torch.onnx")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", r"`torch\.jit\.\w+` is deprecated", DeprecationWarning)
            warnings.filterwarnings("ignore", r".*LeafSpec", FutureWarning)
            warnings.filterwarnings("ignore", r"# The axis name", UserWarning)  # z and y share the batch Dim
            yield
    finally:
        log.setLevel(level)

