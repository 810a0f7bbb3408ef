"""What every benchmark shares: where results and docs go, the machine it ran on, how it was run,
and writing a generated doc. A script in benchmarks/ imports it as `from common import ...`
(Python puts a script's own folder on sys.path).
"""

from __future__ import annotations

import os
import shlex
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
