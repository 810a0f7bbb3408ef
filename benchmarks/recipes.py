"""Train every recipe on MNIST for a stated budget and record wall time, images/s and the final grid.

    python benchmarks/recipes.py                      # every recipe at the budget in BUDGET
    python benchmarks/recipes.py --recipes cs231n-gan,wgan --epochs 2

Each run is `gankit train RECIPE --epochs E` in a fresh process (the real CLI, defaults otherwise
untouched). Results accumulate in benchmarks/out/recipes.json, so runs can be done one at a time;
docs/recipe-runs.md and docs/grids/RECIPE.png are rewritten from everything recorded so far.
Run one benchmark at a time: timings on a shared 2-core machine are noisy enough already.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out"
DOCS = ROOT / "docs"
# Epochs per recipe: the seed's full budget where it fits in minutes on a 2-core CPU, else less.
BUDGET = {"tlx-mlp": 50, "cs231n-gan": 10, "cs231n-lsgan": 10, "cs231n-dcgan": 5, "mlp-gan": 10,
          "dcgan64": 1, "wgan": 1, "wgan-gp": 1}


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"


def run_recipe(name: str, epochs: float, dataset: str) -> dict:
    out = OUT / name
    cmd = [sys.executable, "-m", "gankit", "train", name, "--dataset", dataset, "--epochs", str(epochs),
           "--out", str(out), "--overwrite", "--no-progress"]
    print("$", " ".join(cmd[1:]), flush=True)
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"{name} failed:\n{p.stderr}")
    summary = json.loads(p.stdout.strip().splitlines()[-1])
    grid = sorted((out / "samples").glob("step-*.png"))[-1]
    (DOCS / "grids").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(grid, DOCS / "grids" / f"{name}.png")
    row = {"recipe": name, "dataset": dataset, "epochs": epochs, "steps": summary["steps"],
           "wall_s": round(time.perf_counter() - t, 1), "train_s": summary["wall_s"],
           "images_per_s": summary["images_per_s"], "final": summary["final"],
           "command": f"gankit train {name} --dataset {dataset} --epochs {epochs}", "machine": machine(),
           "date": time.strftime("%Y-%m-%d")}
    print(json.dumps(row), flush=True)
    return row


def write_doc(results: dict) -> None:
    lines = ["# Recipe runs on MNIST", "",
             "Written by `python benchmarks/recipes.py` (re-run it to reproduce). Each row is one "
             "`gankit train` run with the recipe's own settings and the stated budget, on the machine named "
             "below, float32 on the CPU. *images/s* counts real images through D per second of the whole "
             "run (grids and checkpoints included); *wall* is the whole process, data loading included.", "",
             "| recipe | epochs | steps | wall | train | images/s | final losses | grid |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results.values():
        f = r["final"]
        losses = ", ".join(f"{k} {f[k]:.3g}" for k in f if k not in ("step", "images_per_s", "time_s"))
        lines.append(f"| `{r['recipe']}` | {r['epochs']:g} | {r['steps']} | {r['wall_s']:.0f} s | {r['train_s']:.0f} s "
                     f"| {r['images_per_s']:.0f} | {losses} | ![{r['recipe']}](grids/{r['recipe']}.png) |")
    machines = sorted({r["machine"] for r in results.values()})
    lines += ["", "Machine: " + "; ".join(machines) + ".", "", "Commands:", ""]
    lines += [f"    {r['command']}" for r in results.values()]
    (DOCS / "recipe-runs.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    sys.path.insert(0, str(ROOT / "src"))
    from gankit.recipes import RECIPES

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipes", default=",".join(r for r in RECIPES if r != "toy"))
    ap.add_argument("--epochs", type=float, help="one budget for every recipe listed (default: BUDGET)")
    ap.add_argument("--dataset", default="mnist")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    store = OUT / "recipes.json"
    results = json.loads(store.read_text()) if store.exists() else {}
    for name in args.recipes.split(","):
        if name not in RECIPES:
            raise SystemExit(f"--recipes: unknown recipe {name!r} (known: {', '.join(RECIPES)})")
    for name in args.recipes.split(","):
        results[name] = run_recipe(name, args.epochs or BUDGET.get(name, 1), args.dataset)
        store.write_text(json.dumps(results, indent=2))
        write_doc({k: results[k] for k in RECIPES if k in results})


if __name__ == "__main__":
    main()
