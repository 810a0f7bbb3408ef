"""How fast gankit's fid_inception extracts features, against what this machine's convolutions can do.

    python benchmarks/fid_inception_speed.py                          # CPU, 256 images, all cores
    python benchmarks/fid_inception_speed.py --before 64              # also time the shipped TorchScript path
    python benchmarks/fid_inception_speed.py --bf16_check 64          # fp32 vs bf16 features and FID
    python benchmarks/fid_inception_speed.py --device cuda --num_images 4096 --batch_sizes 128,256,512 --bf16_check 2000

Prints how it ran (CPU or GPU model, torch's CPU kernel level, threads, the precision "auto"
resolves to, torch version), then
  floor   the sustained GFLOP/s of large convolutions in the same precision (3x3 and 1x1,
          channels_last, Inception's own 17x17 and 35x35 shapes): the best a convolution network
          can hope for here;
  after   images/s of inception_features on noise images of MNIST's shape (28 x 28 grey, so the
          resize is included) at each batch size, wall clock and per CPU-second;
  before  with --before N: N images through the shipped TorchScript network at batch 50 (the path
          gankit used before the eager port);
  10k     seconds per 10,000 images at the best batch size, against the floor's estimate
          (10,000 x 11.4 GFLOP / floor) -- the ratio is what the task targets (<= 1.5);
  bf16    with --bf16_check N: N MNIST test vs N train images, features in fp32 and in bf16
          autocast: the largest feature difference and the relative FID difference (must be < 0.5%).
On a shared machine the wall clock depends on who else runs, so CPU-time rates are printed too;
the floor is measured before and after the network and the better one is kept.
Writes benchmarks/out/fid_inception_speed.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from gankit import hardware
from gankit.metrics import fid_inception as fi
from gankit.metrics.fid import frechet_distance
from gankit.metrics.stats import mean_cov

from common import OUT, machine

FLOOR_SHAPES = [(32, 192, 192, 35, 3), (32, 768, 192, 17, 1), (32, 384, 384, 17, 3)]  # batch, C_in, C_out, H = W, k


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class Clock:
    """Wall and CPU (user + system) seconds of this process over a block."""

    def __enter__(self):
        self.t, self.r = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
        return self

    def __exit__(self, *exc):
        r = resource.getrusage(resource.RUSAGE_SELF)
        self.wall = time.perf_counter() - self.t
        self.cpu = r.ru_utime - self.r.ru_utime + r.ru_stime - self.r.ru_stime


@torch.inference_mode()
def conv_floor(device: torch.device, precision: str, reps: int = 3) -> dict:
    """Best GFLOP/s (wall and per CPU-second) over a few large convolutions in `precision`."""
    best = {"gflops": 0.0, "gflops_per_cpu_s": 0.0}
    for b, c_in, c_out, h, k in FLOOR_SHAPES:
        x = torch.randn(b, c_in, h, h, device=device).contiguous(memory_format=torch.channels_last)
        w = torch.randn(c_out, c_in, k, k, device=device).contiguous(memory_format=torch.channels_last)
        flop = 2 * b * c_out * c_in * k * k * h * h
        with torch.autocast(device.type, torch.bfloat16, enabled=precision == "bf16"):
            F.conv2d(x, w, padding=k // 2)
            for _ in range(reps):
                with Clock() as c:
                    F.conv2d(x, w, padding=k // 2)
                    sync(device)
                best["gflops"] = max(best["gflops"], flop / c.wall / 1e9)
                best["gflops_per_cpu_s"] = max(best["gflops_per_cpu_s"], flop / max(c.cpu, 1e-9) / 1e9)
    return best


@torch.inference_mode()
def gflop_per_image() -> float:
    """The convolutions' FLOPs (2 x multiply-adds) of one 299 x 299 image; pools and ReLUs add under 1%."""
    total = 0

    def count(module, inputs, out):
        nonlocal total
        total += 2 * out.numel() * module.weight[0].numel()

    net = fi.load_inception("cpu")
    hooks = [m.register_forward_hook(count) for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    try:
        net(fi.preprocess(torch.zeros(1, 1, 28, 28)))
    finally:
        for h in hooks:
            h.remove()
    return total / 1e9


def time_features(x: torch.Tensor, device: torch.device, batch_size: int, precision: str) -> dict:
    fi.inception_features(x[:batch_size], device, batch_size, progress=False, precision=precision)  # warm-up
    with Clock() as c:
        fi.inception_features(x, device, batch_size, progress=False, precision=precision)
        sync(device)
    return {"batch_size": batch_size, "images": len(x), "images_per_s": len(x) / c.wall,
            "images_per_cpu_s": len(x) / max(c.cpu, 1e-9), "wall_s": c.wall, "cpu_s": c.cpu}


@torch.inference_mode()
def time_before(x: torch.Tensor, batch_size: int = 50) -> dict:
    """The path gankit used before: the shipped TorchScript network (NCHW, BatchNorm unfolded) at batch 50, CPU."""
    net = fi.load_torchscript()
    prep = lambda xb: fi.preprocess(xb).contiguous()  # noqa: E731 -- NCHW, as before
    for _ in range(2):  # TorchScript's profiling executor optimises the graph on its first runs
        net(prep(x[:2]))
    with Clock() as c:
        for i in range(0, len(x), batch_size):
            net(prep(x[i:i + batch_size]))
    return {"batch_size": batch_size, "images": len(x), "images_per_s": len(x) / c.wall,
            "images_per_cpu_s": len(x) / max(c.cpu, 1e-9), "wall_s": c.wall, "cpu_s": c.cpu}


def bf16_check(n: int, device: torch.device) -> dict:
    """fp32 vs bf16 features of n MNIST test and n train images, and the FID between the two sets in each."""
    from gankit.evaluate import real_images
    sets = {s: real_images("mnist", s, n).float() / 127.5 - 1 for s in ("test", "train")}
    feats = {}
    for precision in ("fp32", "bf16"):
        with Clock() as c:
            feats[precision] = {s: fi.inception_features(x, device, progress=False, precision=precision)
                                for s, x in sets.items()}
        print(f"  {precision}: {2 * n / c.wall:.2f} images/s", flush=True)
    fid = {p: frechet_distance(*mean_cov(f["train"]), *mean_cov(f["test"])) for p, f in feats.items()}
    diff = max((feats["bf16"][s] - feats["fp32"][s]).abs().max().item() for s in sets)
    scale = max(feats["fp32"][s].abs().max().item() for s in sets)
    out = {"images_per_set": n, "fid_fp32": fid["fp32"], "fid_bf16": fid["bf16"],
           "fid_rel_diff": abs(fid["bf16"] - fid["fp32"]) / fid["fp32"], "max_feature_diff": diff,
           "max_feature": scale}
    if device.type == "cuda":  # torch's default "fp32" convolutions on a GPU are TF32; also compare strict fp32
        torch.backends.cudnn.allow_tf32 = False
        strict = {s: fi.inception_features(x, device, progress=False, precision="fp32") for s, x in sets.items()}
        torch.backends.cudnn.allow_tf32 = True
        fid_strict = frechet_distance(*mean_cov(strict["train"]), *mean_cov(strict["test"]))
        out.update(fid_fp32_strict=fid_strict, fid_tf32_rel_diff=abs(fid["fp32"] - fid_strict) / fid_strict,
                   fid_bf16_vs_strict_rel_diff=abs(fid["bf16"] - fid_strict) / fid_strict,
                   max_feature_diff_tf32=max((feats["fp32"][s] - strict[s]).abs().max().item() for s in sets))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--num_images", "--num-images", type=int, default=256, help="images per batch-size measurement")
    p.add_argument("--batch_sizes", "--batch-sizes", default="16,32,64,128")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's, one per core)")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    p.add_argument("--before", type=int, default=0, metavar="N", help="also time N images through the TorchScript path")
    p.add_argument("--bf16_check", "--bf16-check", type=int, default=0, metavar="N",
                   help="compare fp32 and bf16 features and FID on N vs N MNIST images")
    p.add_argument("--out", type=Path, default=OUT / "fid_inception_speed.json")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    precision, why, _ = hardware.resolve_precision(args.precision, device)
    hw = hardware.inspect(device)
    run = {"cpu": hardware.cpu_model(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
           "device": hw.name if device.type == "cuda" else "cpu", "threads": torch.get_num_threads(),
           "precision": precision, "precision_why": why, "torch": torch.__version__, "python": platform.python_version()}
    print(f"{machine()}; device {run['device']}, precision {precision} ({why})", flush=True)

    gflop = gflop_per_image()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(args.num_images, 1, 28, 28, generator=g) * 2 - 1
    floors = [conv_floor(device, precision)]
    print(f"floor: {floors[0]['gflops']:.1f} GFLOP/s {precision} conv ({floors[0]['gflops_per_cpu_s']:.1f} per CPU-s); "
          f"Inception: {gflop:.2f} GFLOP per image", flush=True)
    after = []
    for bs in (int(b) for b in args.batch_sizes.split(",")):
        r = time_features(x, device, bs, precision)
        after.append(r)
        print(f"after : batch {bs:4d}: {r['images_per_s']:7.2f} images/s = {r['images_per_s'] * gflop:6.1f} GFLOP/s "
              f"({r['images_per_cpu_s']:.2f} images per CPU-s)", flush=True)
    before = None
    if args.before:
        before = time_before(x[:args.before])
        print(f"before: batch   50: {before['images_per_s']:7.2f} images/s = {before['images_per_s'] * gflop:6.1f} GFLOP/s "
              f"({before['images_per_cpu_s']:.2f} images per CPU-s), TorchScript, NCHW", flush=True)
    floors.append(conv_floor(device, precision))
    floor = {k: max(f[k] for f in floors) for k in floors[0]}
    best = max(after, key=lambda r: r["images_per_s"])
    est = 10_000 * gflop / floor["gflops"]
    s10k = 10_000 / best["images_per_s"]
    ratio_cpu = floor["gflops_per_cpu_s"] / (best["images_per_cpu_s"] * gflop)
    print(f"floor : {floor['gflops']:.1f} GFLOP/s (best of before and after; {floor['gflops_per_cpu_s']:.1f} per CPU-s)")
    print(f"10k   : {s10k:.0f} s at batch {best['batch_size']} vs {est:.0f} s at the floor: ratio {s10k / est:.2f} "
          f"(per CPU-second: {ratio_cpu:.2f})" + (f"; before: {10_000 / before['images_per_s']:.0f} s" if before else ""))
    result = {"run": run, "gflop_per_image": gflop, "floor": floor, "floors": floors, "after": after, "before": before,
              "seconds_per_10k": s10k, "floor_seconds_per_10k": est, "ratio": s10k / est, "ratio_cpu_time": ratio_cpu}
    if args.bf16_check:
        print(f"bf16 check on {args.bf16_check} + {args.bf16_check} MNIST images:", flush=True)
        check = bf16_check(args.bf16_check, device)
        print("  " + ", ".join(f"{k} {v:.4g}" for k, v in check.items()))
        result["bf16_check"] = check
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
