"""Measure what the techniques of docs/recipes.md ("Beyond the seed recipes") do, with the real CLI:

- conditioning: train a conditional recipe, then `gankit eval` with class_acc (the share of the
  class-k samples the evaluator calls k) beside FID;
- the moving average of G: the same recipe, seed and budget with and without g_ema, both scored
  with the same `gankit eval` (the averaged run scores its averaged G).

    python benchmarks/techniques.py                          # everything below, ~1 h on 2 CPU cores
    python benchmarks/techniques.py --only cgan --epochs 2

Results accumulate in benchmarks/out/techniques.json; docs/techniques.md is rewritten from them.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from common import DOCS, OUT, machine, write_doc

RUNS = {  # name -> (recipe, epochs, extra --set values)
    "cgan": ("cgan", 10, []),
    "cs231n-gan": ("cs231n-gan", 5, []),
    "cs231n-gan+g_ema": ("cs231n-gan", 5, ["g_ema=0.999"]),
    "cs231n-lsgan": ("cs231n-lsgan", 5, []),
    "cs231n-lsgan+g_ema": ("cs231n-lsgan", 5, ["g_ema=0.999"]),
    "acgan": ("acgan", 1, []),
    "acgan-5": ("acgan", 5, []),
    "cgan+acgan": ("cgan", 10, ["conditional=acgan"]),
    "cgan-20+g_ema": ("cgan", 20, ["g_ema=0.999"]),
    "cdcgan": ("cdcgan", 6, []),
    "acgan-1+real-class": ("acgan", 1, ["acgan_on_fake=false"]),
    "r3gan-mnist": ("r3gan-mnist", 5, []),
    "r3gan-mnist-2": ("r3gan-mnist", 2, []),  # R1 + R2 at every step cost about twice a plain step on a CPU
    "limit2000": ("cs231n-dcgan", 60, ["limit=2000"]),  # DiffAugment's setting: few images, many passes
    "limit2000+diffaugment": ("cs231n-dcgan", 60, ["limit=2000", "diffaugment=color,translation,cutout"]),
    "cdcgan-fashion": ("cdcgan", 6, ["dataset=fashion-mnist"]),
}


def run(name: str, epochs: float | None, num_samples: int, reuse: bool = False) -> dict:
    recipe, default_epochs, sets = RUNS[name]
    epochs = epochs or default_epochs
    out = OUT / "techniques" / name
    if reuse and (out / "checkpoint.pt").exists():  # trained already: evaluate it again
        print(f"reusing {out}", file=sys.stderr, flush=True)
        return score(name, recipe, epochs, sets, out, json.loads((out / "stats.jsonl").read_text().splitlines()[-1])
                     ["time_s"], num_samples)
    cmd = [sys.executable, "-m", "gankit", "train", recipe, "--epochs", str(epochs), "--out", str(out), "--overwrite",
           "--no-progress", "--seed", "0", *[a for s in sets for a in ("--set", s)]]
    print("$", " ".join(cmd[1:]), file=sys.stderr, flush=True)
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode:
        raise SystemExit(f"{name} failed:\n{p.stderr}")
    return score(name, recipe, epochs, sets, out, time.perf_counter() - t, num_samples)


def score(name: str, recipe: str, epochs: float, sets: list, out, wall: float, num_samples: int) -> dict:
    e = subprocess.run([sys.executable, "-m", "gankit", "eval", str(out), "--num-samples", str(num_samples)],
                       capture_output=True, text=True)
    if e.returncode:
        raise SystemExit(f"eval of {name} failed:\n{e.stderr}")
    metrics = json.loads((out / "metrics.json").read_text())
    return {"name": name, "recipe": recipe, "epochs": epochs, "set": sets, "train_s": round(wall, 1),
            "num_samples": num_samples, "machine": machine(), "date": time.strftime("%Y-%m-%d"),
            **{k: v for k, v in metrics.items() if k in ("fid", "fid_floor", "is", "precision", "recall", "modes",
                                                         "class_acc", "class_acc_min", "class_acc_by_class",
                                                         "class_acc_floor")}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", help=f"comma-separated, of {', '.join(RUNS)}")
    ap.add_argument("--epochs", type=float, help="override every run's epochs")
    ap.add_argument("--num-samples", type=int, default=10_000)
    ap.add_argument("--reuse", action="store_true", help="evaluate runs already trained in benchmarks/out/techniques")
    args = ap.parse_args()
    names = args.only.split(",") if args.only else list(RUNS)
    path = OUT / "techniques.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    for name in names:
        results[name] = run(name, args.epochs, args.num_samples, args.reuse)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=2) + "\n")
    doc = DOCS / "techniques.md"
    text = render(results, doc.read_text() if doc.exists() else "")
    write_doc(doc, text)
    print(text)


HEADER = ("Written by `python benchmarks/techniques.py` (re-run it to reproduce; `--only NAME` for one row, with "
          "`--epochs E` where a row's epochs differ from the script's RUNS). Each row is "
          "`gankit train RECIPE --epochs E --seed 0 [--set ...]`, then `gankit eval RUN --num-samples 10000` with "
          "the dataset's evaluator (FID in its embedding, as in [results.md](results.md); a run with g_ema is scored "
          "with its averaged G). *class_acc* is the share of the samples drawn for class k that the evaluator calls k, "
          "over all classes drawn equally often; its floor is the evaluator's accuracy on real training images. "
          "*train s* is wall time of `gankit train`; rows measured while other jobs shared the 2 cores are slower "
          "than the machine can do, so compare metrics, not times. The techniques are explained in "
          "[recipes.md](recipes.md#beyond-the-seed-recipes-conditioning-and-the-techniques-peers-ship).")


def label(recipe: str, sets: list[str]) -> str:
    """A row's first cell: the recipe and its --set overrides."""
    return f"`{recipe}`" + (f" (`{' '.join('--set ' + s for s in sets)}`)" if sets else "")


def render(results: dict, old: str = "") -> str:
    """docs/techniques.md: the `old` doc's rows in their order, each replaced by the row of `results`
    (name -> result) with its run and epochs, then the results no old row had
    (benchmarks/out/techniques.json is scratch: `--only NAME` on a fresh checkout replaces that row alone)."""
    fresh = {(label(r["recipe"], r["set"]), f"{r['epochs']:g}"): row(r) for r in results.values()}
    rows = ["| run | epochs | FID (floor) | IS | precision / recall | class_acc (worst class; floor) | train s | machine |",
            "|---|---|---|---|---|---|---|---|"]
    for line in old.splitlines():
        if line.startswith("| `"):
            cells = line.split(" | ")
            rows.append(fresh.pop((cells[0][2:], cells[1]), line))
    rows += fresh.values()
    return "\n".join([
        "# Techniques: conditioning, the moving average of G, R3GAN's objective and DiffAugment, measured", "",
        HEADER, "", *rows, ""])


def row(r: dict) -> str:
    acc = (f"{r['class_acc']:.3f} ({r['class_acc_min']:.3f}; {r['class_acc_floor']:.3f})" if "class_acc" in r else "")
    return (f"| {label(r['recipe'], r['set'])} | {r['epochs']:g} | {r['fid']:.2f} ({r['fid_floor']:.2f}) | {r['is']:.2f} | "
            f"{r['precision']:.3f} / {r['recall']:.3f} | {acc} | {r['train_s']:.0f} | {r['machine']}, {r['date']} |")


if __name__ == "__main__":
    main()
