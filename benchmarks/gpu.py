"""Throughput on a CUDA GPU: gankit's trainer against the tutorials' loop, per recipe.

    python benchmarks/gpu.py                          # every MNIST recipe, 3 alternating rounds
    python benchmarks/gpu.py --recipes cs231n-dcgan --rounds 5 --write-doc

The same two loops as benchmarks/throughput.py (the seed-style loop: a per-sample Dataset, a
shuffling DataLoader, each batch copied to the GPU, float32, a .item() per step; gankit.train with
the recipe's defaults: data resident on the GPU as uint8, bf16 autocast, channels_last, fused
Adam, statistics read every N steps), on the GPU, alternating rounds; images/s of real images
through D after `--warmup` untimed steps, and their ratio (median over rounds). The
semi-supervised recipes have no seed-style loop here; their gankit rate is given alone. The
results carry the GPU (name, compute capability, native bf16: gankit.hardware) and the precision
each gankit run resolved to. They go to benchmarks/out/gpu.json and, with --write-doc, to
docs/performance-gpu.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import torch

from common import DOCS, OUT, hardware_record, measured_by, notes, provenance, step_state, write_doc
from throughput import MNIST_RECIPES, gankit_run, seed_style

STEPS = {"tlx-mlp": 1200, "cs231n-gan": 600, "cs231n-lsgan": 600, "mlp-gan": 600, "cs231n-dcgan": 300,
         "dcgan64": 150, "wgan": 60, "wgan-gp": 60, "improved-gan": 600, "ssgan": 150}
SSL_RECIPES = ["improved-gan", "ssgan"]


def one_recipe(name: str, rounds: int, warmup: int, batch_size: int | None = None, gankit_steps: int = 1) -> dict:
    """seed-style, gankit eager and gankit with its step captured in a CUDA graph (the default),
    alternating rounds, at the recipe's batch size or `batch_size`."""
    from gankit.hardware import resolve_precision
    from gankit.recipes import get
    from gankit.config import with_data
    from gankit.data import load_split

    cfg = get(name).config(out="unused", device="cuda", eval_every=0)
    if batch_size:
        cfg.batch_size = batch_size
    precision = resolve_precision(cfg.precision, "cuda")[0]  # what the gankit run trains in
    data = load_split(cfg)
    cfg = with_data(cfg, data)
    steps = max(20, STEPS[name] * 128 // cfg.batch_size)
    seed_rates, eager_rates, graph_rates = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            if name not in SSL_RECIPES:
                seed_rates.append(seed_style(cfg, data, steps, warmup, "cuda"))
            # gankit's rate is read from stats.jsonl, whose times have 10 ms resolution: time more steps
            eager_rates.append(gankit_run(cfg, steps * gankit_steps, warmup, Path(tmp) / "run", device="cuda",
                                          eval_every=0, cuda_graph=False))
            graph_rates.append(gankit_run(cfg, steps * gankit_steps, warmup, Path(tmp) / "run", device="cuda",
                                          eval_every=0, cuda_graph=True))
            print(f"  {name} batch {cfg.batch_size} round {r + 1}: seed-style "
                  f"{seed_rates[-1] if seed_rates else float('nan'):.0f} img/s, gankit eager {eager_rates[-1]:.0f}, "
                  f"cuda graph {graph_rates[-1]:.0f}", file=sys.stderr, flush=True)
    med = statistics.median
    return {"recipe": name, "batch_size": cfg.batch_size, "n_critic": cfg.n_critic, "steps": steps,
            "gankit_steps": steps * gankit_steps, "precision": precision, "precision_requested": cfg.precision,
            "seed_style_img_s": med(seed_rates) if seed_rates else None,
            "eager_img_s": med(eager_rates), "gankit_img_s": med(graph_rates),
            "graph_speedup": med(g / e for g, e in zip(graph_rates, eager_rates)),
            "ratios": [g / s for g, s in zip(graph_rates, seed_rates)],
            "ratio": med(g / s for g, s in zip(graph_rates, seed_rates)) if seed_rates else None}


def kernel_profile(name: str, batch_size: int, steps: int = 5) -> dict:
    """The eager gankit step under torch.profiler: the GPU kernels that take the most time, and
    the share of elementwise and layout-conversion kernels; plus every activation or gradient of
    a conv net that is not channels_last (a layout conversion waiting to happen)."""
    from torch.profiler import ProfilerActivity, profile

    from gankit.recipes import get
    from gankit.steps import gan_update

    size = get(name).config().image_size or 28
    cfg = get(name).config(out="unused", device="cuda", batch_size=batch_size, data_shape=[1, size, size])
    device = torch.device("cuda")
    s = step_state(cfg, device)
    G, D = s.G, s.D
    x = (torch.rand(batch_size * cfg.n_critic, *cfg.data_shape, device=device) * 2 - 1).contiguous(
        memory_format=torch.channels_last)
    not_cl = set()

    def check(tag):
        def hook(m, inputs, out):
            for t in (*inputs, out):
                if isinstance(t, torch.Tensor) and t.dim() == 4 and t.shape[1] > 1 and min(t.shape[2:]) > 1 \
                        and not t.is_contiguous(memory_format=torch.channels_last):
                    not_cl.add(f"{tag} {type(m).__name__} {tuple(t.shape)} stride {t.stride()}")
        return hook

    hooks = [m.register_forward_hook(check(tag)) for tag, net in (("G", G), ("D", D)) for m in net.modules()
             if not list(m.children())]

    def step():
        return gan_update(s, [(x_real, ()) for x_real in x.chunk(cfg.n_critic)])

    for _ in range(3):
        step()
    for h in hooks:
        h.remove()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            step()
        torch.cuda.synchronize()
    events = [e for e in prof.key_averages() if e.self_device_time_total > 0]
    total = sum(e.self_device_time_total for e in events) or 1
    top = sorted(events, key=lambda e: -e.self_device_time_total)[:15]
    layout = sum(e.self_device_time_total for e in events if any(k in e.key for k in ("nchwToNhwc", "nhwcToNchw")))
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA], record_shapes=True) as prof2:
        step()
        torch.cuda.synchronize()
    launchers = {}  # which aten op launches the layout conversions and the plain elementwise kernels
    for e in prof2.events():
        for k in e.kernels:
            if "ToNhwc" in k.name or "ToNchw" in k.name or "gpu_kernel_impl_nocast" in k.name:
                key = f"{k.name[:40]} <- {e.name} {e.input_shapes}"[:200]
                launchers[key] = launchers.get(key, 0) + k.duration
    return {"recipe": name, "batch_size": batch_size, "gpu_ms_per_step": total / 1e3 / steps,
            "layout_share": layout / total,
            "launchers": sorted(launchers.items(), key=lambda kv: -kv[1])[:12],
            "top": [(e.key[:90], round(e.self_device_time_total / total, 4)) for e in top], "not_channels_last": sorted(not_cl)}


def render_doc(res: dict) -> str:
    """docs/performance-gpu.md from the results in benchmarks/out/gpu.json."""
    lines = ["# Performance on a GPU", "",
             f"{measured_by(res)}; {res['rounds']} alternating rounds, "
             "median. The CPU figures are in [performance.md](performance.md).", "",
             "| recipe | batch | precision | steps per round (seed-style / gankit) | seed-style img/s | gankit eager img/s "
             "| gankit (CUDA graph) img/s | graph / eager | speed-up over seed-style (rounds) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in res["recipes"]:
        seed = f"{r['seed_style_img_s']:.0f}" if r["seed_style_img_s"] else "–"
        ratio = (f"**{r['ratio']:.2f}x** ({', '.join(f'{x:.2f}' for x in r['ratios'])})" if r["ratio"]
                 else "– (no seed-style loop)")
        eager = f"{r['eager_img_s']:.0f}" if r.get("eager_img_s") else "–"
        graph = f"{r['graph_speedup']:.2f}x" if r.get("graph_speedup") else "–"
        lines.append(f"| `{r['recipe']}` | {r['batch_size']}{' x' + str(r['n_critic']) if r['n_critic'] > 1 else ''} "
                     f"| {r.get('precision', 'bf16')} | {r['steps']} / {r.get('gankit_steps', r['steps'])} | {seed} | {eager} | {r['gankit_img_s']:.0f} | "
                     f"{graph} | {ratio} |")
    for p in res.get("profiles", []):
        lines += ["", f"Profile of the eager `{p['recipe']}` step at batch {p['batch_size']}: {p['gpu_ms_per_step']:.2f} ms "
                  f"of GPU kernels per step, {100 * p['layout_share']:.0f}% in cuDNN's NCHW/NHWC conversions; "
                  f"tensors not channels_last: {', '.join(p['not_channels_last']) or 'none'}. Top kernels: "
                  + "; ".join(f"{k} {100 * v:.0f}%" for k, v in p["top"][:8]) + "."]
    return "\n".join(lines + notes("gpu-notes.md")) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipes", default=",".join(MNIST_RECIPES + SSL_RECIPES))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--gankit-steps", type=int, default=1, help="time gankit over this many times the seed-style "
                    "loop's steps (its rate comes from stats.jsonl, whose times have 10 ms resolution)")
    ap.add_argument("--batch-sizes", help="comma-separated batch sizes to measure at (default: each recipe's own)")
    ap.add_argument("--profile", default="", help="comma-separated RECIPE@BATCH: profile gankit's eager step's "
                    "kernels there and list the tensors that are not channels_last")
    ap.add_argument("--write-doc", action="store_true", help="write docs/performance-gpu.md (without a GPU: from "
                    "the results in benchmarks/out/gpu.json)")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        if args.write_doc and (OUT / "gpu.json").exists():  # rewrite the doc from the results measured on a GPU
            write_doc(DOCS / "performance-gpu.md", render_doc(json.loads((OUT / "gpu.json").read_text())))
            return
        raise SystemExit("benchmarks/gpu.py needs a CUDA GPU (use benchmarks/throughput.py on a CPU)")
    res = {**provenance(), "hardware": hardware_record("cuda"), "rounds": args.rounds, "recipes": []}
    print(res["machine"], flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    for batch_size in [int(b) for b in args.batch_sizes.split(",")] if args.batch_sizes else [None]:
        for name in args.recipes.split(","):
            r = one_recipe(name, args.rounds, args.warmup, batch_size, args.gankit_steps)
            res["recipes"].append(r)
            seed, ratio = r["seed_style_img_s"] or float("nan"), r["ratio"] or float("nan")
            print(f"{name:14s} batch {r['batch_size']:5d} {r['precision']} seed-style {seed:8.0f} img/s  eager "
                  f"{r['eager_img_s']:8.0f}  cuda graph {r['gankit_img_s']:8.0f} img/s  x{ratio:.2f} over seed-style, "
                  f"graph x{r['graph_speedup']:.2f} over eager", flush=True)
            (OUT / "gpu.json").write_text(json.dumps(res, indent=2))
    for spec in filter(None, args.profile.split(",")):
        name, _, bs = spec.partition("@")
        p = kernel_profile(name, int(bs or 128))
        res.setdefault("profiles", []).append(p)
        print(json.dumps(p, indent=1), flush=True)
        (OUT / "gpu.json").write_text(json.dumps(res, indent=2))
    if args.write_doc:
        write_doc(DOCS / "performance-gpu.md", render_doc(res))


if __name__ == "__main__":
    main()
