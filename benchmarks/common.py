"""What every benchmark shares: where results and docs go, the machine it ran on, how it was run,
and writing a generated doc. A script in benchmarks/ imports it as `from common import ...`
(Python puts a script's own folder on sys.path).
"""

from __future__ import annotations

import json
import math
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch

from gankit import hardware
from gankit.build import build, mixes_samples
from gankit.distributed import World
from gankit.files import write_text_atomic

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out"
DOCS = ROOT / "docs"


def epochs_arg(epochs: float) -> str:
    """`--epochs` as given to gankit train and shown in commands: 5.0 -> "5", a fraction exactly (1/3 -> repr)."""
    return str(int(epochs)) if float(epochs).is_integer() else repr(float(epochs))


def check_sets(items: list[str]) -> None:
    """Stop with gankit train's own one-line message where a --set item is bad, before any run starts."""
    from gankit.config import parse_sets
    from gankit.errors import GankitError

    try:
        parse_sets(items)
    except GankitError as e:
        raise SystemExit(str(e)) from None


def machine() -> str:
    """This machine in one line for a results file or a doc header: the CPU, what it runs natively,
    its cores, torch and its threads, and the GPU where CUDA is available, e.g.
    'AMD EPYC (cpu AVX2, no native bf16), 2 cores, torch 2.13.0+cpu, 2 threads'."""
    cpu = hardware.inspect("cpu")
    line = (f"{cpu.name} ({cpu.describe()}), {os.cpu_count()} cores, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads")
    if torch.cuda.is_available():
        gpu = hardware.inspect("cuda")
        memory = torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory / 2 ** 30
        line += f", {gpu.name} ({memory:.0f} GiB, {gpu.describe()})"
    return line


def machine_class(hw: hardware.Hardware) -> str:
    """A short slug for what decides the figures: cpu-avx2, cpu-avx512, cpu-avx512-bf16, cpu-amx, cuda-sm90."""
    if hw.device == "cuda":
        return "cuda-" + hw.capability.replace("_", "")
    if "AMX" in hw.capability:
        return "cpu-amx"
    base = hw.capability.split(" + ")[0].lower()  # torch's kernel level: avx2, avx512, default, ...
    return f"cpu-{base}-bf16" if hw.native_bf16 else f"cpu-{base}"


def hardware_record(device: str) -> dict:
    """The device's facts as gankit.hardware sees them, and its machine class, for a results file."""
    hw = hardware.inspect(device)
    return {"device": hw.device, "name": hw.name, "capability": hw.capability, "native_bf16": hw.native_bf16,
            "describe": hw.describe(), "machine_class": machine_class(hw)}


def command() -> str:
    """How this benchmark was started, to retype from the repository root."""
    return "python " + shlex.join([f"benchmarks/{Path(sys.argv[0]).name}", *sys.argv[1:]])


def provenance() -> dict:
    """command, machine and date of this run: what a results file opens with."""
    return {"command": command(), "machine": machine(), "date": time.strftime("%Y-%m-%d")}


def measured_by(res: dict) -> str:
    """The header line of a generated doc, from a results file's provenance."""
    return f"Measured by `{res['command']}` on {res['machine']}, {res['date']}"


def eval_run(run, num_samples: int, metrics: str | None = None, device: str | None = None) -> dict | str:
    """`gankit eval RUN` (its default metrics for the run, or `metrics`), run from the repository root
    (where the relative folder:PATH of a run recorded before runs kept an absolute one points): what it
    wrote to metrics.json, or the end of its error output, so a queue of runs can record it and go on."""
    run = Path(run).resolve()
    cmd = [sys.executable, "-m", "gankit", "eval", str(run), "--num-samples", str(num_samples)]
    cmd += (["--metrics", metrics] if metrics else []) + (["--device", device] if device else [])
    e = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    return json.loads((run / "metrics.json").read_text()) if e.returncode == 0 else e.stderr[-2000:]


def evaluate(run, num_samples: int, metrics: str | None = None) -> dict:
    """eval_run, exiting the benchmark with the error where it fails."""
    scores = eval_run(run, num_samples, metrics)
    if isinstance(scores, str):
        raise SystemExit(f"{run}: eval failed:\n{scores}")
    return scores


def notes(name: str) -> list[str]:
    """The hand-written benchmarks/NAME as lines to append to a generated doc ([] where it is missing)."""
    path = ROOT / "benchmarks" / name
    return ["", path.read_text().strip()] if path.exists() else []


def with_section(old: str, begin: str, end: str, body: str) -> str:
    """`old` with the section from marker `begin` to marker `end` replaced by `body` (which carries
    both markers), or with `body` appended where the section is missing."""
    if begin in old:
        return old[:old.index(begin)] + body + old[old.index(end) + len(end):]
    return old.rstrip() + "\n\n" + body + "\n"


def write_doc(path: Path, text: str) -> None:
    """Write a generated doc whole or not at all: a reader, or a crash mid-write, never sees half of it."""
    write_text_atomic(path, text)


def peak_rss_reset() -> None:
    try:  # Linux: writing 5 to clear_refs resets VmHWM, the peak resident set size
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def matmul_peak(dtype: torch.dtype, n: int = 2048, reps: int = 10) -> float:
    """GFLOP/s of an n x n CPU matmul in `dtype` with torch's current threads: the machine's scale."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n ** 3 * reps / (time.perf_counter() - t) / 1e9


def step_state(cfg, device: torch.device) -> SimpleNamespace:
    """What gankit.steps.gan_update reads of a run's State (networks, optimisers, precision), built
    without data or a run folder, to time or profile the step alone."""
    G, D, opt_g, opt_d = build(cfg, device)
    return SimpleNamespace(cfg=cfg, G=G, D=D, G_run=G, D_run=D, opt_g=opt_g, opt_d=opt_d, world=World(), step=0,
                           amp=hardware.autocast(cfg.precision, device), joint=not mixes_samples(D),
                           augment=lambda x: x, draw_labels=lambda n: (), labels_of=lambda idx: ())


def curve(runs: dict[str, list[tuple[float, float]]], path: Path, x_label: str, width: int = 760,
          height: int = 420) -> None:
    """A PNG of FID (log scale) against training seconds, one polyline per run, legend on the right;
    x_label names the machine the seconds were counted on."""
    from PIL import Image, ImageDraw

    colours = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
    left, top, plot_w, plot_h = 60, 20, width - 290, height - 70
    t_max = max(t for pts in runs.values() for t, _ in pts)
    lo, hi = 1.0, 1000.0  # FID axis, log scale

    def xy(t, f):
        return (left + plot_w * t / t_max,
                top + plot_h * (1 - (math.log10(min(max(f, lo), hi)) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))))

    im = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(im)
    for f in (1, 3, 10, 30, 100, 300, 1000):
        y = xy(0, f)[1]
        d.line([(left, y), (left + plot_w, y)], fill="#e5e5e5")
        d.text((left - 8, y), str(f), fill="black", anchor="rm")
    for k in range(6):
        x = left + plot_w * k / 5
        d.text((x, top + plot_h + 6), f"{t_max * k / 5:.0f}", fill="black", anchor="mt")
    d.rectangle([left, top, left + plot_w, top + plot_h], outline="black")
    d.text((left + plot_w / 2, height - 18), x_label, fill="black", anchor="mm")
    d.text((8, top - 12), "FID (gankit evaluator, 2,000 samples)", fill="black")
    for i, (name, pts) in enumerate(runs.items()):
        c = colours[i % len(colours)]
        d.line([xy(t, f) for t, f in pts], fill=c, width=2)
        d.line([(left + plot_w + 14, top + 14 + 20 * i), (left + plot_w + 34, top + 14 + 20 * i)], fill=c, width=3)
        d.text((left + plot_w + 40, top + 14 + 20 * i), name, fill="black", anchor="lm")
    im.save(path)


def fid_over_time(run: Path) -> list[tuple[float, float]]:
    """(seconds, FID) at each --eval-every evaluation: the step's time from stats.jsonl, interpolated."""
    stats = [json.loads(x) for x in (run / "stats.jsonl").read_text().splitlines()]
    steps, times = [r["step"] for r in stats], [r["time_s"] for r in stats]
    out = []
    for m in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()):
        k = min(range(len(steps)), key=lambda i: abs(steps[i] - m["step"]))
        out.append((times[k] * m["step"] / steps[k], m["fid"]))
    return out
