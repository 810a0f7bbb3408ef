"""What the hardware runs natively, and the precision chosen from it.

bfloat16 autocast halves the cost of a matmul or convolution only where the hardware has bf16
arithmetic: on a CPU with AMX or AVX-512 BF16 instructions, on a CUDA GPU from Ampere on. On a
CPU without them (every AVX2-only CPU: most laptops, AMD Zen 2/3, Intel consumer chips) oneDNN
and ATen emulate bf16 with float32 arithmetic plus conversions: on a 2-core AVX2 EPYC its matrix
products ran at 1 GFLOP/s against 108 in float32 (docs/performance.md). ``precision="auto"``
therefore resolves to bf16 only where it is native, and to fp32 everywhere else.

Also: pick_device (auto | cpu | cuda | cuda:N, one GPU per torchrun process) and autocast.
"""

from __future__ import annotations

import contextlib
import platform
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from gankit.distributed import World
from gankit.config import DEVICE_FORM, PRECISIONS
from gankit.errors import GankitError



@dataclass(frozen=True)
class Hardware:
    """One device's facts that decide the precision, in words fit for a banner."""

    device: str  # cpu | cuda
    name: str  # CPU model or GPU name
    capability: str  # cpu: torch's kernel level (AVX2, AVX512, ...) and AMX; cuda: sm_XY
    native_bf16: bool

    def describe(self) -> str:
        """'cpu AVX2, no native bf16' / 'cpu AVX512 + AMX, native bf16' / 'cuda sm_90, native bf16'."""
        return f"{self.device} {self.capability}, {'native' if self.native_bf16 else 'no native'} bf16"


@lru_cache(maxsize=None)
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_flags() -> dict[str, bool]:
    """torch's own CPU feature checks (cpuinfo); False where this torch build lacks one."""
    flags = {}
    for name, attr in (("amx", "_is_amx_tile_supported"), ("avx512_bf16", "_is_avx512_bf16_supported"),
                       ("avx512", "_is_avx512_supported"), ("avx2", "_is_avx2_supported")):
        check = getattr(torch.cpu, attr, None)
        try:
            flags[name] = bool(check()) if check else False
        except Exception:  # a CPU or build cpuinfo cannot read
            flags[name] = False
    return flags


def inspect(device: torch.device | str = "cpu") -> Hardware:
    """What `device` runs natively. On a CPU, bf16 is native with AMX tiles or AVX-512 BF16; oneDNN's
    own check (torch.ops.mkldnn._is_mkldnn_bf16_supported) also says yes on plain AVX-512, where it
    converts to float32 for the arithmetic, so it is not used to decide."""
    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        major, minor = torch.cuda.get_device_capability(index)
        try:
            native = torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:  # older torch: no emulation flag
            native = major >= 8
        return Hardware("cuda", torch.cuda.get_device_name(index), f"sm_{major}{minor}", bool(native))
    flags = _cpu_flags()
    capability = torch.backends.cpu.get_cpu_capability()
    if flags["amx"]:
        capability += " + AMX"
    elif flags["avx512_bf16"]:
        capability += " + AVX512_BF16"
    return Hardware(device.type, cpu_model(), capability, flags["amx"] or flags["avx512_bf16"])


def resolve_precision(requested: str, device: torch.device | str) -> tuple[str, str, str | None]:
    """-> (precision, why, warning): `requested` (auto | bf16 | fp32) made concrete for `device`.

    why: one line for the start-up banner, e.g. 'cpu AVX2, no native bf16 -> fp32'.
    warning: one line when bf16 was asked for where it is emulated, else None."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    hw = inspect(device)
    if requested == "auto":
        chosen = "bf16" if hw.native_bf16 else "fp32"
        return chosen, f"{hw.describe()} -> {chosen}", None
    warning = None
    if requested == "bf16" and not hw.native_bf16:
        warning = (f"bf16 is emulated on this {hw.device} ({hw.describe()}): expect it to be many times slower "
                   f"than fp32 (11-19x on an AVX2 CPU, docs/performance.md); --precision auto picks fp32 here")
    return requested, f"{hw.describe()} -> {requested} (as configured)", warning


def pick_device(name: str, world: World = World()) -> torch.device:
    """auto | cpu | cuda | cuda:N -> a torch.device; in a torchrun job "cuda" is this process's own GPU."""
    if not re.fullmatch(DEVICE_FORM, name):
        raise GankitError(f"--device {name}: expected auto, cpu, cuda or cuda:N")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise GankitError(f"--device {name}: CUDA is not available on this machine (use --device cpu)")
    if name.startswith("cuda:") and int(name[5:]) >= torch.cuda.device_count():
        gpus = torch.cuda.device_count()
        raise GankitError(f"--device {name}: this machine has {gpus} GPU{'s' if gpus != 1 else ''} "
                          f"(cuda:0 to cuda:{gpus - 1})")
    if name.startswith("cuda:") and world.local_size > 1:
        raise GankitError(f"--device {name}: under torchrun each process takes its own GPU (cuda:LOCAL_RANK); "
                          "use --device cuda")
    if name == "cuda" and world.size > 1:
        gpus = torch.cuda.device_count()
        if world.local_size > gpus:
            raise GankitError(f"--device cuda: {world.local_size} processes on this machine but {gpus} GPU"
                              f"{'s' if gpus != 1 else ''}; run torchrun --nproc_per_node={gpus}, or --device cpu")
        name = f"cuda:{world.local_rank}"  # one GPU per process
    return torch.device(name)


def autocast(precision: str, device: torch.device, cache: bool = True):
    """bfloat16 autocast for matmuls and convolutions (weights and optimiser stay float32), or
    nothing for fp32; "auto" is resolved for `device` first. No weight-cast cache inside a CUDA graph."""
    if precision == "auto":
        precision = resolve_precision(precision, device)[0]
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=cache)
    return contextlib.nullcontext()
