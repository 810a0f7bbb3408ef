"""Train every recipe on MNIST for a stated budget, evaluate it, and record wall time, images/s,
metrics and the final grid.

    python benchmarks/recipes.py                      # every recipe at the budget in BUDGET (and SETS)
    python benchmarks/recipes.py --recipes cs231n-gan,wgan --epochs 2
    python benchmarks/recipes.py --recipes tlx-mlp --rescore --inception   # add its Inception FID
    python benchmarks/recipes.py --recipes mlp-gan --epochs 200 --eval-every 10000  # and its FID curve
    python benchmarks/recipes.py --recipes wgan-gp --epochs 6 --set image_size=32   # a 64 px recipe at 32 px

Each run is `gankit train RECIPE --epochs E` in a fresh process (the real CLI, defaults otherwise
untouched), then `gankit eval RUN --num-samples 10000` (FID, IS, precision/recall and class
coverage in the MNIST evaluator's embedding, each beside its real-vs-real floor). Results
accumulate in benchmarks/out/recipes.json, so runs can be done one at a time; docs/results.md
and docs/grids/RECIPE.png are rewritten from everything recorded so far.
Run one benchmark at a time: timings on a shared 2-core machine are noisy enough already.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from gankit.files import write_text_atomic

from common import DOCS, OUT, check_sets, curve, epochs_arg, evaluate, fid_over_time, machine, notes, write_doc
from folder64 import BEGIN as FOLDER_BEGIN
from ssl_mnist import BEGIN

# Epochs per recipe: the seed's full budget where it fits in minutes on a 2-core CPU, else less
# (dcgan64's 25 at 32 px: 46 minutes with native bf16, about twice that on an AVX2-only CPU);
# wgan's and wgan-gp's are twice their 25, where their FIDs were still falling (wgan about 0.6 an epoch,
# wgan-gp about 1 an epoch over epochs 16-25).
BUDGET = {"tlx-mlp": 50, "cs231n-gan": 10, "cs231n-lsgan": 10, "cs231n-dcgan": 5, "mlp-gan": 200,
          "dcgan64": 25, "wgan": 50, "wgan-gp": 50, "r3gan-mnist": 32}
# --set overrides per recipe where --set is not given: the 64 px recipes run at 32 px (an epoch at
# 64 px takes 18-36 minutes on a 2-core AVX2 CPU in float32); r3gan-mnist with lazy R1/R2 and the
# learning rates decayed over the last quarter, the settings that brought its Inception FID under 5.
SETS = {**{name: ("image_size=32",) for name in ("dcgan64", "wgan", "wgan-gp")},
        "r3gan-mnist": ("reg_every=4", "lr_decay=0.25")}

COLUMNS = ["recipe", "epochs", "steps", "train", "wall", "images/s", "FID", "Inception FID", "IS", "precision",
           "recall", "classes", "grid"]
METRICS = ("fid", "fid_inception", "is", "precision", "recall", "modes")  # metrics.json keys of the FID..classes cells


def run_recipe(name: str, epochs: float, dataset: str, num_samples: int, inception: bool = False,
               eval_every: int = 0, sets: tuple[str, ...] = ()) -> dict:
    """Train NAME and evaluate it: the row of the results file. inception adds the Inception FID
    (~20 minutes on a 2-core CPU, timed apart from the row's wall); eval_every writes FID during
    training and draws docs/curves/NAME.png from it; sets are `gankit train --set` overrides
    (e.g. image_size=32 for a 64 px recipe on a CPU), named in the row's recipe cell."""
    out = OUT / name
    flags = (["--eval-every", str(eval_every)] if eval_every else []) + [a for s in sets for a in ("--set", s)]
    cmd = [sys.executable, "-m", "gankit", "train", name, "--dataset", dataset, "--epochs", epochs_arg(epochs),
           "--out", str(out), "--overwrite", "--no-progress"] + flags
    print("$", " ".join(cmd[1:]), flush=True)
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"{name} failed:\n{p.stderr}")
    summary = json.loads(p.stdout.strip().splitlines()[-1])
    scores = evaluate(out, num_samples)  # gankit eval's default metrics for the run
    wall = time.perf_counter() - t  # the table's wall: train and the default eval
    if inception:
        scores = add_inception(out, scores, num_samples)
    grid = sorted((out / "samples").glob("step-*.png"))[-1]
    (DOCS / "grids").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(grid, DOCS / "grids" / f"{name}.png")
    if eval_every:
        (DOCS / "curves").mkdir(exist_ok=True)
        curve({name: fid_over_time(out)}, DOCS / "curves" / f"{name}.png", f"training time, s ({machine()})")
    row = {"recipe": name, "sets": list(sets), "dataset": dataset, "epochs": epochs, "steps": summary["steps"],
           "wall_s": round(wall, 1), "inception_s": round(time.perf_counter() - t - wall, 1) if inception else None,
           "train_s": summary["wall_s"],
           "images_per_s": summary["images_per_s"], "final": summary["final"], "metrics": scores,
           "command": " ".join(["gankit train", name, "--dataset", dataset, "--epochs", epochs_arg(epochs)] + flags),
           "machine": machine(), "date": time.strftime("%Y-%m-%d")}
    print(json.dumps(row), flush=True)
    return row


def rescore_recipe(name: str, row: dict, num_samples: int, inception: bool = False) -> dict:
    """The recorded `row` of NAME with its run evaluated again (inception: only its Inception FID
    added); the training figures stay the old run's, eval_s says what the new evaluation took."""
    out = OUT / name
    steps = [json.loads(line)["step"] for line in (out / "stats.jsonl").read_text().splitlines()[-1:]] \
        if (out / "stats.jsonl").exists() else []
    if steps != [row["steps"]]:
        raise SystemExit(f"--rescore {name}: {out} is not the recorded run of {row['steps']} steps "
                         f"({'its last step is ' + str(steps[0]) if steps else 'no stats.jsonl'}); train it again")
    t = time.perf_counter()
    scores = add_inception(out, row.get("metrics", {}), num_samples) if inception else evaluate(out, num_samples)
    row = {**row, "metrics": scores, "eval_s": round(time.perf_counter() - t, 1), "eval_machine": machine()}
    print(json.dumps(row), flush=True)
    return row


def add_inception(run: Path, scores: dict, num_samples: int) -> dict:
    """`scores` with the run's Inception FID added. `gankit eval` adds it to the run's metrics.json
    where that file names the checkpoint it scored (written since 2026-11-27); an older one it
    replaces, so `scores` are written back beside it when they were measured at the same count."""
    new = evaluate(run, num_samples, "fid_inception")
    if scores.get("num_samples") == num_samples:
        write_text_atomic(run / "metrics.json", json.dumps({**scores, **new}, indent=2) + "\n")
    return {**scores, **new}


def old_rows(old: str) -> dict[str, tuple[str, str]]:
    """recipe -> (its table row, its command line) in the `old` doc: what a results file that lacks
    the recipe (benchmarks/out is scratch, and a clean checkout has none) must not erase."""
    head = old.split("\n## ")[0]  # the table and its commands, not the sections after
    rows = {line.split("`")[1]: widen(line) for line in head.splitlines() if line.startswith("| `")}
    commands = {line.split()[2]: line.rstrip() for line in head.splitlines() if line.startswith("    gankit train ")}
    return {name: (row, commands.get(name, "")) for name, row in rows.items()}


def widen(row: str) -> str:
    """A table row of the older layout (no Inception FID column) with that cell added, empty."""
    cells = row.split("|")  # one cell fewer than COLUMNS, and the empty strings outside the edge bars
    return "|".join(cells[:8] + ["  "] + cells[8:]) if len(cells) == len(COLUMNS) - 1 + 2 else row


def machine_lines(results: dict, old: str, kept: dict, order: list[str]) -> list[str]:
    """Where the rows ran, each row named under one machine: "Machine: M." for all of them where
    they share one, else "Machine: M." for the old doc's general machine (the most common one where
    no row has it any more) and "Machine of `a`, `b`: M." for each other machine. A kept row keeps
    the machine the old doc gave it; a new row, the machine it ran on."""
    shown = [n for n in order if n in results or n in kept]
    old_lines = [line for line in old.split("\n## ")[0].splitlines() if line.startswith("Machine")]
    general = next((line.removeprefix("Machine: ").removesuffix(".") for line in old_lines
                    if line.startswith("Machine: ")), None)
    named = {}  # the machine the old doc named for a row
    for line in old_lines:
        if line.startswith("Machine of "):
            names, m = line.removeprefix("Machine of ").split(": ", 1)
            named.update({n: m.removesuffix(".") for n in names.replace("`", "").split(", ")})
    where = {n: results[n]["machine"] if n in results else named.get(n, general) or "a machine not recorded"
             for n in shown}
    by_machine: dict[str, list[str]] = {}
    for n in shown:
        by_machine.setdefault(where[n], []).append(n)
    if len(by_machine) <= 1:
        return [f"Machine: {m}." for m in by_machine]
    first = general if general in by_machine else max(by_machine, key=lambda m: len(by_machine[m]))
    out = [f"Machine: {first}."] + [f"Machine of {', '.join(f'`{n}`' for n in names)}: {m}."
                                    for m, names in by_machine.items() if m != first]
    return [line for pair in zip(out, [""] * len(out)) for line in pair][:-1]


def render_doc(results: dict, old: str, order: list[str] | None = None) -> str:
    """docs/results.md from `results` (recipe -> row), keeping the rows of recipes `results` lacks
    and the generated sections that follow the table in the `old` doc (the semi-supervised one,
    which benchmarks/ssl_mnist.py owns, and the folder one of benchmarks/folder64.py)."""
    lines = ["# Results: every recipe on MNIST", "",
             "Written by `python benchmarks/recipes.py --inception` (re-run it to reproduce the rows; "
             "`--eval-every N` also records the FID curves of docs/curves/, and `--recipes NAME --epochs E "
             "--set KEY=VALUE` one row, as the commands below the table say). Each row is one "
             "`gankit train RECIPE --epochs E` run with the recipe's own settings (but for the `--set` overrides in "
             "brackets after a name: `image_size=32` runs a 64 px recipe at 32 px, where 64 px is too slow for a "
             "2-core CPU; `reg_every=4, lr_decay=0.25` are `r3gan-mnist`'s lazy R1/R2 and learning-rate decay, "
             "the settings of its Inception FID under 5) and `--precision auto` (bf16 autocast where the CPU has native bf16, float32 on an AVX2-only CPU like the one below), "
             "then `gankit eval RUN --num-samples 10000`. *images/s* counts real images through D per second "
             "of training (grids and checkpoints included); *train* is the trainer's own time; *wall* is both "
             "processes, `gankit train` (data loading included) and `gankit eval`.",
             "", "Metrics use gankit's MNIST evaluator (a small CNN, 99.56% test accuracy): FID in its 256-d "
             "embedding against 10,000 test images, Inception Score of its class probabilities, precision/recall "
             "(Kynkäänniemi et al. 2019, k = 3) and the number of digit classes holding at least 1% of the samples. "
             "The *floor* row is 10,000 training images scored the same way: what a perfect generator would get; "
             "the 32 px rows have their own, the training images resized to 32 px as those runs trained on them "
             "(every metric scores a run against real images at its own size). "
             "These do not compare with published tables; the *Inception FID* column does: the standard FID "
             "(TF-Inception pool3 features, 10,000 samples against the 10,000 test images, Lucic et al. 2018's "
             "protocol; `gankit eval RUN --metrics fid_inception`, about 20 minutes on a 2-core AVX2 CPU in float32, 7 "
             "on one with native bf16), "
             "empty where it has not been measured yet.", "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    floors, kept = {}, old_rows(old)  # image size -> the metrics that hold its floors
    for name in order or list(results):
        if name not in results:
            if name in kept:
                lines.append(kept[name][0])
            continue
        r = results[name]
        m = r.get("metrics", {})
        size = next((int(v.split("=")[1]) for v in r.get("sets", []) if v.startswith("image_size=")), 28)
        floors[size] = m if "fid_inception_floor" in m or size not in floors else floors[size]
        cells = [f"{m[k]:.2f}" if isinstance(m.get(k), float) else str(m.get(k, "")) for k in
                 METRICS]
        setting = f" ({', '.join(r['sets'])})" if r.get("sets") else ""
        lines.append(f"| `{r['recipe']}`{setting} | {r['epochs']:g} | {r['steps']} | {r['train_s']:.0f} s | {r['wall_s']:.0f} s "
                     f"| {r['images_per_s']:.0f} | {' | '.join(cells)} | ![{r['recipe']}](grids/{r['recipe']}.png) |")
    # a floor row per image size: real images resized as the rows' runs trained on them score differently
    old_floors = {int(m[1] or 28): widen(line) for line in old.splitlines()
                  if (m := re.match(r"\| real vs real (?:at (\d+) px )?\(floor\)", line))}
    for size in sorted(set(floors) | set(old_floors)):
        label = "real vs real (floor)" if size == 28 else f"real vs real at {size} px (floor)"
        if size not in floors:
            lines.append(old_floors[size])
            continue
        kept_cells = old_floors[size].split("|")[7:7 + len(METRICS)] if size in old_floors else [""] * len(METRICS)
        floor = floors[size]  # a floor no new row measured (the Inception one, say) stays the old doc's
        cells = [f"{floor[k + '_floor']:.2f}" if isinstance(floor.get(k + "_floor"), float) else
                 str(floor.get(k + "_floor", "")) or c.strip() for k, c in zip(METRICS, kept_cells)]
        lines.append(f"| {label} | | | | | | {' | '.join(cells)} | |")
    lines += [""] + machine_lines(results, old, kept, order or list(results)) + ["", "Commands:", ""]
    lines += [f"    {results[n]['command']}" if n in results else kept[n][1]
              for n in order or list(results) if n in results or (n in kept and kept[n][1])]
    lines += notes("results-notes.md")
    tail = [old.index(m) for m in (BEGIN, FOLDER_BEGIN) if m in old]
    if tail:
        lines += ["", old[min(tail):].rstrip()]
    return "\n".join(lines) + "\n"


def main() -> None:
    from gankit.recipes import RECIPES

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipes", default=",".join(r for r in RECIPES if r != "toy"))
    ap.add_argument("--epochs", type=float, help="one budget for every recipe listed (default: BUDGET)")
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--num-samples", type=int, default=10_000, help="images for gankit eval (default 10000)")
    ap.add_argument("--inception", action="store_true", help="also the Inception FID (~20 min per recipe on a 2-core CPU)")
    ap.add_argument("--eval-every", type=int, default=0, help="steps between FIDs during training, drawn in docs/curves/")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="passed to gankit train (repeatable), e.g. image_size=32: a 64 px recipe at 32 px on a CPU "
                    "(default: SETS, the table's own)")
    ap.add_argument("--rescore", action="store_true", help="do not train: evaluate the recorded runs again "
                    "(with --inception: add their Inception FID)")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    store = OUT / "recipes.json"
    results = json.loads(store.read_text()) if store.exists() else {}
    for name in args.recipes.split(","):
        if name not in RECIPES:
            raise SystemExit(f"--recipes: unknown recipe {name!r} (known: {', '.join(RECIPES)})")
        if args.rescore and name not in results:
            raise SystemExit(f"--rescore: {store} records no run of {name}; train it first")
    if args.rescore and (args.epochs or args.eval_every or args.set or args.dataset != "mnist"):
        raise SystemExit("--rescore evaluates the recorded runs as they are: --epochs, --eval-every, --set and "
                         "--dataset do not apply")
    check_sets(args.set)
    for name in args.recipes.split(","):
        results[name] = rescore_recipe(name, results[name], args.num_samples, args.inception) if args.rescore else \
            run_recipe(name, args.epochs or BUDGET.get(name, 1), args.dataset, args.num_samples, args.inception,
                       args.eval_every, tuple(args.set) or SETS.get(name, ()))
        store.write_text(json.dumps(results, indent=2))
        doc = DOCS / "results.md"
        write_doc(doc, render_doc(results, doc.read_text() if doc.exists() else "", list(RECIPES)))


if __name__ == "__main__":
    main()
