"""gankit's trainer against the loop GAN tutorials use, side by side, per recipe.

    python benchmarks/throughput.py                     # every MNIST recipe, 3 alternating rounds
    python benchmarks/throughput.py --recipes cs231n-gan,cs231n-dcgan --rounds 5 --write-doc

For each recipe, one child process alternates rounds of
  seed-style: a torch Dataset converting and normalising each sample on access, a shuffling
              DataLoader, float32, G(z) computed with autograd then detached, a .item() per step
              for logging, torch.optim defaults;
  gankit:     gankit.train.train() itself with the recipe's defaults (uint8 data resident in
              memory, the recipe's precision -- "auto": bf16 autocast only where the CPU runs bf16
              natively, else fp32 --, channels_last, fused Adam, statistics read every N steps),
on identical networks, batch size and objective, and reports images/s of real images through D
(steady state: the first `--warmup` steps of every round are not timed), their ratio (median over
rounds), achieved GFLOP/s (FLOPs of one step counted by torch.utils.flop_counter), the peak RSS
of each loop, and the share of a gankit step spent in matmul/conv kernels and the optimiser
(torch.profiler), i.e. how close the step is to that kernel-time floor. The machine's measured
matmul peak (fp32 and bf16) is printed for scale.

Every figure depends on the CPU's instruction set (AVX2, AVX-512, AMX) and on whether it runs
bf16 natively, which also decides the precision "auto" picks (gankit.hardware). So the results
carry the CPU and the precision of each gankit run, go to
benchmarks/out/throughput-<machine class>.json (machine class: cpu-avx2, cpu-avx512,
cpu-avx512-bf16, cpu-amx), and with --write-doc replace that machine class's section of
docs/performance.md, keeping the sections of the other classes.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from gankit import hardware

from common import (DOCS, OUT, hardware_record, matmul_peak, measured_by, notes, peak_rss_mib, peak_rss_reset,
                    provenance, step_state, write_doc)

MNIST_RECIPES = ["tlx-mlp", "cs231n-gan", "cs231n-lsgan", "cs231n-dcgan", "mlp-gan", "dcgan64", "wgan", "wgan-gp"]
# Timed steps per round (after warm-up steps), sized so that a round takes seconds, not minutes.
STEPS = {"tlx-mlp": 600, "cs231n-gan": 300, "cs231n-lsgan": 300, "mlp-gan": 300, "cs231n-dcgan": 60,
         "dcgan64": 10, "wgan": 6, "wgan-gp": 6}
DOC = DOCS / "performance.md"
KERNELS = ("addmm", "mm", "bmm", "linear", "convolution", "conv2d", "conv_transpose", "mkldnn", "_convolution",
           "convolution_backward", "mkldnn_convolution")


# ---------------------------------------------------------------- the tutorials' loop

class TutorialMNIST(torch.utils.data.Dataset):
    """What the tutorials do: each access converts one uint8 image and normalises it to [-1, 1]."""

    def __init__(self, x_uint8: torch.Tensor):
        self.x = x_uint8.numpy()

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        x = torch.tensor(self.x[i], dtype=torch.float32) / 255.0  # ToTensor
        return (x - 0.5) / 0.5, 0  # Normalize((0.5,), (0.5,))


def seed_style(cfg, data, steps: int, warmup: int, device: str = "cpu") -> float:
    """images/s of the straightforward loop on the recipe's own networks and objective (on a GPU:
    nets on the device, each batch copied there as the tutorials do)."""
    from gankit.losses import LOSSES, clip_weights, gradient_penalty
    from gankit.recipes import get
    from gankit.sample import sample_noise

    torch.manual_seed(cfg.seed)
    G, D = get(cfg.recipe).nets(cfg)
    G, D = G.to(device), D.to(device)
    if cfg.optimizer == "rmsprop":
        opt_g, opt_d = torch.optim.RMSprop(G.parameters(), cfg.lr_g), torch.optim.RMSprop(D.parameters(), cfg.lr_d)
    else:
        opt_g = torch.optim.Adam(G.parameters(), cfg.lr_g, betas=tuple(cfg.betas_g))
        opt_d = torch.optim.Adam(D.parameters(), cfg.lr_d, betas=tuple(cfg.betas_d))
    loader = torch.utils.data.DataLoader(TutorialMNIST(data.x), batch_size=cfg.batch_size, shuffle=True, drop_last=True)
    loss = LOSSES[cfg.loss]
    it, done, t = iter(loader), 0, None
    log = []
    while done < steps + warmup:
        if done == warmup:
            t = time.perf_counter()
        for _ in range(cfg.n_critic):
            try:
                x_real, _ = next(it)
            except StopIteration:
                it = iter(loader)
                x_real, _ = next(it)
            x_real = x_real.to(device)
            x_fake = G(sample_noise(cfg, cfg.batch_size, device))
            d_loss, _ = loss(D(x_real), D(x_fake.detach()))
            if cfg.gp_weight:
                d_loss = d_loss + cfg.gp_weight * gradient_penalty(D, x_real, x_fake)
            opt_d.zero_grad()
            d_loss.backward()
            opt_d.step()
            if cfg.clip:
                clip_weights(D, cfg.clip)
        if not cfg.share_z:
            x_fake = G(sample_noise(cfg, cfg.batch_size, device))
        _, g_loss = loss(torch.zeros(()), D(x_fake))  # every G loss reads D(G(z)) alone
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()
        log.append((d_loss.item(), g_loss.item()))  # the per-step host sync of tutorial logging
        done += 1
    if device != "cpu":
        torch.cuda.synchronize()
    return steps * cfg.batch_size * cfg.n_critic / (time.perf_counter() - t)


# ---------------------------------------------------------------- gankit

def gankit_run(cfg, steps: int, warmup: int, out: Path, **over) -> float:
    """images/s of gankit.train.train() between its step `warmup` and its last step, read from the
    run's own stats.jsonl (on the CPU a stats line costs no wait: nothing is queued)."""
    from gankit.run import RunDir
    from gankit.train import train

    run_cfg = type(cfg).from_dict({**cfg.to_dict(), "steps": warmup + steps, "log_every": warmup,
                                   "checkpoint_every": 10 ** 9, "sample_every": 10 ** 9, "out": str(out), **over})
    train(run_cfg, overwrite=True, progress=False)
    rows = RunDir(out).read_stats()
    first, last = next(r for r in rows if r["step"] == warmup), rows[-1]
    return (last["step"] - first["step"]) * cfg.batch_size * cfg.n_critic / (last["time_s"] - first["time_s"])


def step_flops(cfg) -> float:
    """FLOPs of one training step (n_critic D updates and one G update), counted at float32.
    The gradient penalty is left out: FlopCounterMode cannot follow its double backward, so the
    WGAN-GP figure is a lower bound."""
    from torch.utils.flop_counter import FlopCounterMode

    from gankit.losses import LOSSES
    from gankit.recipes import get
    from gankit.sample import sample_noise

    G, D = get(cfg.recipe).nets(cfg)
    x_real = torch.rand(cfg.batch_size, *cfg.data_shape) * 2 - 1
    with FlopCounterMode(display=False) as fc:
        for _ in range(cfg.n_critic):
            with torch.no_grad():
                x_fake = G(sample_noise(cfg, cfg.batch_size))
            d_loss, _ = LOSSES[cfg.loss](D(x_real), D(x_fake))
            d_loss.backward()
        D.requires_grad_(False)
        _, g_loss = LOSSES[cfg.loss](D(x_real), D(G(sample_noise(cfg, cfg.batch_size))))
        g_loss.backward()
    return float(fc.get_total_flops())


def kernel_profile(cfg, data, steps: int = 10) -> tuple[float, float]:
    """gankit's step under torch.profiler -> (share of its CPU time spent in matmul/conv kernels
    and the optimiser steps, seconds of that kernel + optimiser time per step)."""
    from torch.profiler import ProfilerActivity, profile

    from gankit.steps import gan_update

    torch.manual_seed(0)
    s = step_state(cfg, torch.device("cpu"))
    x_all = data.x[:cfg.batch_size * cfg.n_critic * (steps + 2)]

    def step(i):
        batches = [(i * cfg.n_critic + j) % (len(x_all) // cfg.batch_size) for j in range(cfg.n_critic)]
        x_reals = [x_all[b * cfg.batch_size:(b + 1) * cfg.batch_size].float().div_(127.5).sub_(1) for b in batches]
        gan_update(s, [(x_real, ()) for x_real in x_reals])

    step(0)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for i in range(steps):
            step(i + 1)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    kernel = sum(e.self_cpu_time_total for e in events
                 if e.key.startswith("aten::") and any(k == e.key[6:] or e.key[6:].startswith(k) for k in KERNELS))
    optim = sum(e.cpu_time_total for e in events if e.key.startswith("Optimizer.step#"))
    return (kernel + optim) / total, (kernel + optim) / 1e6 / steps


def one_recipe(name: str, rounds: int, steps: int, warmup: int, compile_rounds: int = 0) -> dict:
    from gankit.recipes import get
    from gankit.config import with_data
    from gankit.data import load_split

    cfg = get(name).config(out="unused")
    precision = hardware.resolve_precision(cfg.precision, "cpu")[0]  # what the gankit run trains in
    data = load_split(cfg)
    cfg = with_data(cfg, data)
    torch.set_num_threads(os.cpu_count() or 1)
    seed_rates, gankit_rates, seed_rss, gankit_rss = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            peak_rss_reset()
            seed_rates.append(seed_style(cfg, data, steps, warmup))
            seed_rss.append(peak_rss_mib())
            peak_rss_reset()
            gankit_rates.append(gankit_run(cfg, steps, warmup, Path(tmp) / "run"))
            gankit_rss.append(peak_rss_mib())
            print(f"  {name} round {r + 1}: seed-style {seed_rates[-1]:.0f} img/s, gankit {gankit_rates[-1]:.0f} img/s",
                  file=sys.stderr, flush=True)
    compiled = None
    if compile_rounds:  # torch.compile: compilation happens in the warm-up steps, which are not timed
        with tempfile.TemporaryDirectory() as tmp:
            rates = [gankit_run(cfg, steps, max(warmup, 6), Path(tmp) / "run", compile=True) for _ in range(compile_rounds)]
            eager = [gankit_run(cfg, steps, max(warmup, 6), Path(tmp) / "run") for _ in range(compile_rounds)]
        compiled = {"compiled_img_s": statistics.median(rates), "eager_img_s": statistics.median(eager)}
    flops = step_flops(cfg)
    images_per_step = cfg.batch_size * cfg.n_critic
    share, kernel_s = kernel_profile(cfg, data)
    fp32_cfg = type(cfg).from_dict({**cfg.to_dict(), "precision": "fp32", "channels_last": False})
    _, fp32_kernel_s = kernel_profile(fp32_cfg, data)
    seed_step_s = images_per_step / statistics.median(seed_rates)
    ratio = statistics.median(g / s for g, s in zip(gankit_rates, seed_rates))
    return {"recipe": name, "batch_size": cfg.batch_size, "n_critic": cfg.n_critic, "data_shape": cfg.data_shape,
            "precision": precision, "precision_requested": cfg.precision,
            "seed_style_img_s": statistics.median(seed_rates), "gankit_img_s": statistics.median(gankit_rates),
            "ratio": ratio, "ratios": [g / s for g, s in zip(gankit_rates, seed_rates)],
            "gflop_per_step": flops / 1e9,
            "seed_style_gflop_s": flops * statistics.median(seed_rates) / images_per_step / 1e9,
            "gankit_gflop_s": flops * statistics.median(gankit_rates) / images_per_step / 1e9,
            "seed_style_rss_mib": max(seed_rss), "gankit_rss_mib": max(gankit_rss),
            "kernel_share": share, "kernel_ms": 1e3 * kernel_s, "fp32_kernel_ms": 1e3 * fp32_kernel_s,
            "kernel_speedup": fp32_kernel_s / kernel_s, "ceiling": seed_step_s / kernel_s,
            "rounds": rounds, "steps": steps, "warmup": warmup,
            "compile": compiled}


def update_doc(res: dict) -> None:
    """Replace this machine class's section of docs/performance.md (or add it), keep the others."""
    prec_file = OUT / "precision.json"
    prec = json.loads(prec_file.read_text()) if prec_file.exists() else None
    sections = read_sections(DOC.read_text() if DOC.exists() else "")
    sections[res["hardware"]["machine_class"]] = render_section(res, prec)
    write_doc(DOC, render_doc(sections))


def render_section(res: dict, prec: dict | None) -> str:
    """A machine class's section: its throughput results, and benchmarks/precision.py's `prec` if
    measured on the same class."""
    hw = res["hardware"]
    bf16 = "" if hw["native_bf16"] else f" ({res['peak_bf16_n']}x{res['peak_bf16_n']}, emulated: no native bf16)"
    precisions = sorted({r["precision"] for r in res["recipes"]})
    lines = [f"## {hw['machine_class']}: {hw['name']}, {res['date']}", "",
             measured_by(res) + ". "
             f"The gankit runs trained in {' and '.join(precisions)} (the *precision* column: each recipe's "
             "precision, `auto` resolved on this CPU); the seed-style loop is always float32. "
             "Every number in this section comes from that one run; re-run it to check them on your machine.", "",
             f"Matmul peak of this machine (2048x2048, all cores): {res['peak_fp32']:.0f} GFLOP/s float32, "
             f"{res['peak_bf16']:.0f} GFLOP/s bfloat16{bf16}.", "",
             "| recipe | batch | precision | seed-style img/s | gankit img/s | speed-up (median of rounds) "
             "| GFLOP/s seed / gankit | kernel share of a gankit step | kernel speed-up fp32 → gankit | ceiling "
             "| peak RSS seed / gankit |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["recipes"]:
        lines.append(f"| `{r['recipe']}` | {r['batch_size']}{' x' + str(r['n_critic']) if r['n_critic'] > 1 else ''} "
                     f"| {r['precision']} | {r['seed_style_img_s']:.0f} | {r['gankit_img_s']:.0f} | **{r['ratio']:.2f}x** "
                     f"({', '.join(f'{x:.2f}' for x in r['ratios'])}) | {r['seed_style_gflop_s']:.0f} / "
                     f"{r['gankit_gflop_s']:.0f} | {100 * r['kernel_share']:.0f}% | {r['kernel_speedup']:.2f}x | "
                     f"{r['ceiling']:.2f}x | "
                     f"{r['seed_style_rss_mib']:.0f} / {r['gankit_rss_mib']:.0f} MiB |")
    comp = [r for r in res["recipes"] if r.get("compile")]
    if comp:
        lines += ["", "torch.compile (`--compile`), steady state after compilation, median of 2 rounds each:", "",
                  "| recipe | eager img/s | compiled img/s | effect |", "|---|---|---|---|"]
        for r in comp:
            c = r["compile"]
            lines.append(f"| `{r['recipe']}` | {c['eager_img_s']:.0f} | {c['compiled_img_s']:.0f} | "
                         f"{c['compiled_img_s'] / c['eager_img_s']:.2f}x |")
    if prec and prec.get("hardware", {}).get("machine_class") == hw["machine_class"]:  # measured on this class
        lines += ["", f"Quality in bf16 against fp32 (`{prec['command']}`, {prec['date']}): FID in the MNIST evaluator's "
                  f"embedding against the test split, {prec['num_samples']} samples, seeds {prec['seeds']}; "
                  "mean ± standard deviation over seeds.", "",
                  "| recipe | epochs | FID fp32 | FID bf16 | IS fp32 / bf16 | train time fp32 / bf16 | same within noise |",
                  "|---|---|---|---|---|---|---|"]
        for r in prec["summary"]:
            a, b = r["fp32"], r["bf16"]
            lines.append(f"| `{r['recipe']}` | {r['epochs']:g} | {a['fid_mean']:.2f} ± {a['fid_std']:.2f} | "
                         f"{b['fid_mean']:.2f} ± {b['fid_std']:.2f} | {a['is_mean']:.2f} / {b['is_mean']:.2f} | "
                         f"{a['train_s_mean']:.0f} s / {b['train_s_mean']:.0f} s | {'yes' if r['within_noise'] else 'no'} |")
    return "\n".join(lines)


SECTION = re.compile(r"<!-- machine: (\S+) -->\n(.*?)\n<!-- /machine -->", re.S)


def read_sections(doc: str) -> dict[str, str]:
    """machine class -> its section's text, in the order of the document."""
    return {m.group(1): m.group(2).strip() for m in SECTION.finditer(doc)}


def render_doc(sections: dict[str, str]) -> str:
    """The intro (naming the sections), each machine class's section between markers, then the notes."""
    headings = [text.splitlines()[0].removeprefix("## ") for text in sections.values()]
    lines = ["# Performance", "",
             "gankit's trainer against the loop the GAN tutorials use (`benchmarks/throughput.py`), one section "
             "per machine class: the CPU's instruction set decides how fast the kernels run and whether bf16 is "
             "native, and so which precision `auto` picks (`gankit.hardware`). Sections: "
             + "; ".join(f"**{h}**" for h in headings) + ". A run with `--write-doc` replaces its own machine "
             "class's section and keeps the others. GPU figures are in [performance-gpu.md](performance-gpu.md)."]
    for cls, text in sections.items():
        lines += ["", f"<!-- machine: {cls} -->", text, "<!-- /machine -->"]
    return "\n".join(lines + notes("performance-notes.md")) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipes", default=",".join(MNIST_RECIPES))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, help="timed steps per round (default: STEPS per recipe), multiple of --warmup")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--compile", default="cs231n-gan,cs231n-dcgan",
                    help="recipes on which to also measure torch.compile against eager (2 rounds each)")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one recipe in this process
    ap.add_argument("--write-doc", action="store_true", help="write docs/performance.md")
    ap.add_argument("--doc-only", action="store_true", help="rewrite this machine class's section of "
                    "docs/performance.md from its last results (benchmarks/out), e.g. after editing the notes")
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one_recipe(args.one, args.rounds, args.steps, args.warmup,
                                    2 if args.one in args.compile.split(",") else 0)))
        return
    hw = hardware_record("cpu")
    if args.doc_only:
        saved = OUT / f"throughput-{hw['machine_class']}.json"
        if not saved.exists():
            raise SystemExit(f"--doc-only: no results in {saved}; run the benchmark first")
        update_doc(json.loads(saved.read_text()))
        return
    res = {**provenance(), "hardware": hw, "peak_fp32": matmul_peak(torch.float32),
           "peak_bf16_n": 2048 if hw["native_bf16"] else 512, "recipes": []}  # emulated: 2048 would take minutes
    res["peak_bf16"] = matmul_peak(torch.bfloat16, res["peak_bf16_n"])
    print(f"{res['machine']}: matmul peak {res['peak_fp32']:.0f} GFLOP/s fp32, {res['peak_bf16']:.0f} bf16", flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    out = OUT / f"throughput-{hw['machine_class']}.json"
    for name in args.recipes.split(","):
        p = subprocess.run([sys.executable, __file__, "--one", name, "--rounds", str(args.rounds),
                            "--steps", str(args.steps or STEPS.get(name, 20)), "--warmup", str(args.warmup),
                            "--compile", args.compile], stdout=subprocess.PIPE, text=True)
        if p.returncode:
            raise SystemExit(f"{name}: measurement failed")
        r = json.loads(p.stdout.strip().splitlines()[-1])
        res["recipes"].append(r)
        print(f"{name:14s} {r['precision']} seed-style {r['seed_style_img_s']:8.0f} img/s  gankit {r['gankit_img_s']:8.0f} img/s  "
              f"x{r['ratio']:.2f}  {r['gankit_gflop_s']:.0f} GFLOP/s  kernels {100 * r['kernel_share']:.0f}% "
              f"(x{r['kernel_speedup']:.2f} over fp32, ceiling x{r['ceiling']:.2f})  "
              f"RSS {r['seed_style_rss_mib']:.0f}/{r['gankit_rss_mib']:.0f} MiB", flush=True)
        out.write_text(json.dumps(res, indent=2))
    if args.write_doc:
        update_doc(res)


if __name__ == "__main__":
    main()
