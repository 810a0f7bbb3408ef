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
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import MNIST_RECIPES, OUT, ROOT, gankit_run, hardware_record, seed_style  # noqa: E402

STEPS = {"tlx-mlp": 1200, "cs231n-gan": 600, "cs231n-lsgan": 600, "mlp-gan": 600, "cs231n-dcgan": 300,
         "dcgan64": 150, "wgan": 60, "wgan-gp": 60, "improved-gan": 600, "ssgan": 150}
SSL_RECIPES = ["improved-gan", "ssgan"]


def one_recipe(name: str, rounds: int, warmup: int) -> dict:
    from gankit.hardware import resolve_precision
    from gankit.recipes import get
    from gankit.train import load_data

    cfg = get(name).config(out="unused", device="cuda", eval_every=0)
    precision = resolve_precision(cfg.precision, "cuda")[0]  # what the gankit run trains in
    data = load_data(cfg)
    steps = STEPS[name]
    seed_rates, gankit_rates = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            if name not in SSL_RECIPES:
                seed_rates.append(seed_style(cfg, data, steps, warmup, "cuda"))
            gankit_rates.append(gankit_run(cfg, steps, warmup, Path(tmp) / "run", device="cuda", eval_every=0))
            print(f"  {name} round {r + 1}: seed-style {seed_rates[-1] if seed_rates else float('nan'):.0f} img/s, "
                  f"gankit {gankit_rates[-1]:.0f} img/s", file=sys.stderr, flush=True)
    return {"recipe": name, "batch_size": cfg.batch_size, "n_critic": cfg.n_critic, "steps": steps,
            "precision": precision, "precision_requested": cfg.precision,
            "seed_style_img_s": statistics.median(seed_rates) if seed_rates else None,
            "gankit_img_s": statistics.median(gankit_rates),
            "ratios": [g / s for g, s in zip(gankit_rates, seed_rates)],
            "ratio": statistics.median(g / s for g, s in zip(gankit_rates, seed_rates)) if seed_rates else None}


def write_doc(res: dict) -> None:
    lines = ["# Performance on a GPU", "",
             f"Measured by `{res['command']}` on {res['machine']}, {res['date']}; {res['rounds']} alternating rounds, "
             "median. The CPU figures are in [performance.md](performance.md).", "",
             "| recipe | batch | precision | steps per round | seed-style img/s | gankit img/s | speed-up (rounds) |",
             "|---|---|---|---|---|---|---|"]
    for r in res["recipes"]:
        seed = f"{r['seed_style_img_s']:.0f}" if r["seed_style_img_s"] else "–"
        ratio = (f"**{r['ratio']:.2f}x** ({', '.join(f'{x:.2f}' for x in r['ratios'])})" if r["ratio"]
                 else "– (no seed-style loop)")
        lines.append(f"| `{r['recipe']}` | {r['batch_size']}{' x' + str(r['n_critic']) if r['n_critic'] > 1 else ''} "
                     f"| {r.get('precision', 'bf16')} | {r['steps']} | {seed} | {r['gankit_img_s']:.0f} | {ratio} |")
    notes = ROOT / "benchmarks" / "gpu-notes.md"
    if notes.exists():
        lines += ["", notes.read_text().strip()]
    (ROOT / "docs" / "performance-gpu.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipes", default=",".join(MNIST_RECIPES + SSL_RECIPES))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--write-doc", action="store_true", help="write docs/performance-gpu.md (without a GPU: from "
                    "the results in benchmarks/out/gpu.json)")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        if args.write_doc and (OUT / "gpu.json").exists():  # rewrite the doc from the results measured on a GPU
            write_doc(json.loads((OUT / "gpu.json").read_text()))
            return
        raise SystemExit("benchmarks/gpu.py needs a CUDA GPU (use benchmarks/throughput.py on a CPU)")
    props, hw = torch.cuda.get_device_properties(0), hardware_record("cuda")
    res = {"command": "python " + " ".join(["benchmarks/gpu.py", *sys.argv[1:]]),
           "machine": f"{props.name} ({props.total_memory / 2 ** 30:.0f} GiB, {hw['describe']}), torch {torch.__version__}",
           "hardware": hw, "date": time.strftime("%Y-%m-%d"), "rounds": args.rounds, "recipes": []}
    print(res["machine"], flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    for name in args.recipes.split(","):
        r = one_recipe(name, args.rounds, args.warmup)
        res["recipes"].append(r)
        seed, ratio = r["seed_style_img_s"] or float("nan"), r["ratio"] or float("nan")
        print(f"{name:14s} {r['precision']} seed-style {seed:8.0f} img/s  gankit {r['gankit_img_s']:8.0f} img/s  x{ratio:.2f}", flush=True)
        (OUT / "gpu.json").write_text(json.dumps(res, indent=2))
    if args.write_doc:
        write_doc(res)


if __name__ == "__main__":
    main()
