"""Semi-supervised MNIST: improved-gan with 100 labels over several data seeds, ssgan with 20% of the
labels, each beside the supervised-only baseline on the same labelled subset.

    python benchmarks/ssl_mnist.py --seeds 0,1,2 --epochs 20                  # improved-gan on this CPU
    python benchmarks/ssl_mnist.py --device cuda --jobs 8 --epochs 40 --ssgan-epochs 8
    python benchmarks/ssl_mnist.py --device cuda --jobs 3 --resume-epochs 100    # continue those GAN runs
    python benchmarks/ssl_mnist.py --seeds 0 --epochs 0 --ssgan-epochs 1      # ssgan alone, one epoch
    python benchmarks/ssl_mnist.py --write-doc                                # docs/results.md from all results
    python benchmarks/ssl_mnist.py --confusion RUN                            # which classes a run mixes up

Every run is the real CLI in a fresh process: `gankit train RECIPE --data-seed S --seed S --epochs E`
(and the same with `--baseline`). Test errors are counted by the trainer on the whole MNIST test
split (10,000 images) after every epoch, with the classifier the recipe tests (improved-gan: the
moving average of D); the number reported is the one after the last epoch, never the best one
seen, since choosing by test error would be training on the test set. Wall time is the trainer's
own (training plus its per-epoch test). With --jobs N > 1, N runs share the device at once (for a
GPU, whose small-batch runs leave it mostly idle), so each run's time is that of a shared device.
Results accumulate in benchmarks/out/ssl-DEVICE.json, rewritten after every run (or batch of --jobs
runs), so a benchmark stopped part-way keeps what finished; --write-doc rewrites the semi-supervised
section of docs/results.md from every such file. Run one benchmark at a time on a small CPU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from common import DOCS, OUT, check_sets, epochs_arg, notes, provenance, with_section, write_doc
from gankit.files import write_text_atomic

RESULTS = DOCS / "results.md"
BEGIN, END = "<!-- semi-supervised: written by benchmarks/ssl_mnist.py -->", "<!-- end semi-supervised -->"
# Published test errors of 10,000 (mean ± sd over labelled subsets) on permutation-invariant MNIST, by labels.
REFERENCES = [
    (100, "Improved GAN (Salimans et al. 2016, Table 1; 300 epochs)", "93 ± 6.5 (0.93 ± 0.065%)"),
    (100, "Triple-GAN (Li et al. 2017)", "91 ± 58 (0.91 ± 0.58%)"),
    (100, "Bad GAN (Dai et al. 2017, Table 1; its runs were chosen by test error)", "79.5 ± 9.8 (0.795 ± 0.098%)"),
    (50, "Improved GAN (as above)", "221 ± 136 (2.21 ± 1.36%)"),
    (50, "Triple-GAN (as above)", "156 ± 72 (1.56 ± 0.72%)"),
    (20, "Improved GAN (as above)", "1,677 ± 452 (16.77 ± 4.52%)"),
    (20, "Triple-GAN (as above)", "481 ± 495 (4.81 ± 4.95%)"),
]


def gankit_train(recipe: str, seed: int, epochs: float, device: str, baseline: bool, out: Path,
                 resume: bool = False, precision: str | None = None, sets: tuple[str, ...] = ()) -> subprocess.Popen:
    if resume:  # the run's own config (precision and settings included), trained on to `epochs`
        cmd = [sys.executable, "-m", "gankit", "train", "--resume", str(out), "--epochs", epochs_arg(epochs),
               "--device", device, "--no-progress"]
    else:
        cmd = [sys.executable, "-m", "gankit", "train", recipe, "--data-seed", str(seed), "--seed", str(seed),
               "--epochs", epochs_arg(epochs), "--device", device, "--out", str(out), "--overwrite", "--no-progress",
               *(["--precision", precision] if precision else []), *(a for item in sets for a in ("--set", item)),
               *(["--baseline"] if baseline else [])]
    print("$ gankit", " ".join(cmd[3:]), flush=True)
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def collect(p: subprocess.Popen, recipe: str, seed: int, epochs: float, baseline: bool, out: Path) -> dict:
    stdout, stderr = p.communicate()
    if p.returncode:
        raise SystemExit(f"{recipe} seed {seed} failed:\n{stderr[-2000:]}")
    summary = json.loads(stdout.strip().splitlines()[-1])
    curve = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    precision = json.loads((out / "config.json").read_text())["precision"]
    row = {"recipe": recipe, "seed": seed, "epochs": epochs, "baseline": baseline, "labelled": summary["labelled"],
           "precision": precision,
           "test_errors": curve[-1]["test_errors"], "test_acc": curve[-1]["test_acc"], "wall_s": summary["wall_s"],
           "steps": summary["steps"], "curve": [(r["step"], r["test_errors"]) for r in curve]}
    print(f"  {recipe}{' baseline' if baseline else ''} seed {seed}: {row['test_errors']} test errors, "
          f"{row['wall_s']:.0f} s", flush=True)
    return row


def run_all(plan: list[tuple[str, int, float, bool]], device: str, jobs: int, resume: bool = False,
            precision: str | None = None, sets: tuple[str, ...] = (), tag: str = "",
            done: Callable[[list[dict]], None] = lambda rows: None) -> list[dict]:
    """Train the plan, `jobs` runs at a time; `done(rows so far)` after each batch."""
    rows, pending = [], list(plan)
    while pending:
        batch, pending = pending[:jobs], pending[jobs:]
        started = []
        for recipe, seed, epochs, baseline in batch:
            out = OUT / f"ssl-{device.split(':')[0]}" / (f"{recipe}{'-baseline' if baseline else ''}"
                                                          f"{'-' + tag if tag else ''}-seed{seed}")
            started.append((gankit_train(recipe, seed, epochs, device, baseline, out, resume, precision, sets), recipe,
                            seed, epochs, baseline, out))
        rows += [collect(*s) for s in started]
        done(rows)
    return rows


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.0f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def update_doc() -> None:
    """Rewrite the semi-supervised section of docs/results.md from every benchmarks/out/ssl-*.json."""
    files = sorted(OUT.glob("ssl-*.json"), key=lambda f: f.stem.replace("-e", "~e"))  # a run before its resumption
    if not files:
        raise SystemExit("no benchmarks/out/ssl-*.json yet: run the benchmark first")
    results = sorted((json.loads(f.read_text()) for f in files), key=lambda r: r["date"])  # stable within a day
    old = RESULTS.read_text() if RESULTS.exists() else "# Results\n"
    write_doc(RESULTS, render_doc(results, old))
    print(f"wrote {RESULTS}")


def render_doc(results: list[dict], old: str) -> str:
    """The `old` docs/results.md with its semi-supervised section (added where missing) rendered
    from `results`, the contents of the ssl-*.json files in order. A block already in the section
    that no results file renders again (same heading and command line) is kept as it stands (results files are scratch, and a
    clean checkout has none), so a new measurement adds to the record instead of erasing it."""
    new = [render_block(res) for res in results]
    kept = [b for key, b in old_blocks(old).items() if key not in {block_key(n) for n in new}]
    lines = [BEGIN, "## Semi-supervised classification (MNIST test split, 10,000 images)", "",
             "Test errors are counted after the last epoch (no choice by test error); mean ± standard deviation "
             "over data seeds (each seed picks another labelled subset and initialisation). Baseline: the same "
             "classifier trained on the same labelled images alone (`--baseline`). The published figures these "
             "compare with (test errors of 10,000, permutation-invariant MNIST):", "",
             "| labels | method | test errors |", "|---|---|---|",
             *(f"| {n} | {who} | {errs} |" for n, who, errs in REFERENCES)]
    for block in kept + new:
        lines += ["", block]
    lines += [*notes("ssl-notes.md"), "", END]
    return with_section(old, BEGIN, END, "\n".join(lines))


def block_key(block: str) -> str:
    """What identifies a result block: its heading and its command line (command, date, sharing)."""
    lines = block.splitlines()
    return lines[0] + "\n" + next((line for line in lines[1:] if line.startswith("`")), "")


def old_blocks(old: str) -> dict[str, str]:
    """The result blocks ("### On ...", up to the next heading or the notes) of the section in `old`."""
    if BEGIN not in old:
        return {}
    section = old[old.index(BEGIN):old.index(END)]
    hand_written = "\n".join(notes("ssl-notes.md")).strip()
    if hand_written and hand_written in section:
        section = section[:section.index(hand_written)]
    blocks = ["### " + part.strip() for part in section.split("\n### ")[1:] if part.startswith("On ")]
    return {block_key(b): b for b in blocks}


def render_block(res: dict) -> str:
    """One results file as a block: heading, command, table, and the mean test errors by epoch."""
    resumed = " (the runs above, continued)" if "--resume-epochs" in res["command"] else ""
    resumed += f", with {', '.join(res['settings'])}" if res.get("settings") else ""
    lines = [f"### On {res['device']}: {res['machine']}{resumed}", "",
             f"`{res['command']}`, {res['date']}" + (f", {res['jobs']} runs at a time on the one device"
                                                     if res["jobs"] > 1 else "") + ".", "",
             "| recipe | labels | epochs | precision | seeds | GAN: test errors | baseline: test errors "
             "| wall time per run (GAN / baseline) |", "|---|---|---|---|---|---|---|---|"]
    groups: dict[tuple, dict] = {}
    for r in res["runs"]:
        g = groups.setdefault((r["recipe"], r["epochs"]), {"gan": [], "base": [], "labelled": r["labelled"],
                                                           "precision": r.get("precision", "bf16")})
        g["base" if r["baseline"] else "gan"].append(r)
    for (recipe, epochs), g in groups.items():
        gan, base = g["gan"], g["base"]
        errs = lambda rs: mean_std([r["test_errors"] for r in rs]) if rs else "–"  # noqa: E731
        secs = lambda rs: f"{statistics.mean(r['wall_s'] for r in rs):.0f} s" if rs else "–"  # noqa: E731
        lines.append(f"| `{recipe}` | {g['labelled']:,} | {epochs:g} | {g['precision']} | "
                     f"{', '.join(str(r['seed']) for r in gan)} | "
                     f"**{errs(gan)}** ({', '.join(str(r['test_errors']) for r in gan)}) | {errs(base)} | "
                     f"{secs(gan)} / {secs(base)} |")
    for (recipe, epochs), g in groups.items():
        if g["gan"] and len(g["gan"][0]["curve"]) > 2:
            steps = [s for s, _ in g["gan"][0]["curve"]]
            per_epoch = steps[0]
            means = [statistics.mean(r["curve"][i][1] for r in g["gan"]) for i in range(len(steps))]
            marks = sorted({0, 1, 2, 4, 9, 19, 29, 49, 99, 149, 199, 299, len(steps) - 1} & set(range(len(steps))))
            lines += ["", f"`{recipe}` test errors during training (mean over seeds), by epoch: " +
                      ", ".join(f"{steps[i] // per_epoch}: {means[i]:.0f}" for i in marks) + "."]
    return "\n".join(lines)


def confusion(run: str) -> None:
    """Print the test-split confusion matrix of a semi-supervised run's tested classifier and its
    largest mix-ups: the classes that merged, which the error count alone does not show."""
    from gankit.config import is_semi_supervised
    from gankit.data import load_split
    from gankit.errors import GankitError
    from gankit.metrics.accuracy import confusion_matrix
    from gankit.sample import load_networks

    try:
        _, D, cfg = load_networks(run, "cpu")  # D: the moving average where the run keeps one, as tested
    except GankitError as e:
        raise SystemExit(f"--confusion: {e}") from None
    if not is_semi_supervised(cfg):
        raise SystemExit(f"--confusion {run}: not a semi-supervised run ({cfg.recipe} without labels)")
    test = load_split(cfg, "test")
    cm = confusion_matrix(D, test.x, test.y, cfg.num_classes)
    print(f"{run}: {int(cm.sum() - cm.trace())} test errors; rows: true class, columns: the classifier's")
    print("      " + "".join(f"{k:>6}" for k in range(len(cm))))
    for k, row in enumerate(cm.tolist()):
        print(f"{k:>6}" + "".join(f"{v:>6}" for v in row))
    off = [(int(cm[t, p]), t, p) for t in range(len(cm)) for p in range(len(cm)) if t != p]
    print("largest mix-ups: " + ", ".join(f"{n} of {int(cm[t].sum())} {t}s called {p}"
                                          for n, t, p in sorted(off, reverse=True)[:3]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0,1,2", help="data seeds for improved-gan (comma-separated)")
    ap.add_argument("--epochs", type=float, default=20, help="improved-gan epochs per run (the paper: 300; 0: "
                    "skip improved-gan, e.g. to run only ssgan)")
    ap.add_argument("--ssgan-epochs", type=float, default=0, help="also run ssgan (20%% labels, data seed of the "
                    "first --seeds) for this many epochs; 0: skip")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--jobs", type=int, default=1, help="runs at a time (GPU only; keep 1 on a CPU)")
    ap.add_argument("--precision", choices=["bf16", "fp32"], help="train in this precision instead of the "
                    "recipes' own (results -> ssl-DEVICE-PRECISION.json)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a config override for every run, e.g. --set adam_eps=1e-4 (results -> ssl-DEVICE-TAG.json)")
    ap.add_argument("--tag", help="name of the variant that --set makes (default: its keys)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the supervised baselines")
    ap.add_argument("--resume-epochs", type=float, help="instead: continue the improved-gan runs (not the baselines) "
                    "of --seeds on --device to this many epochs (gankit train --resume); -> ssl-DEVICE-eN.json")
    ap.add_argument("--write-doc", action="store_true", help="only rewrite docs/results.md from the results so far")
    ap.add_argument("--confusion", metavar="RUN", nargs="+", help="only print the test confusion matrix of these "
                    "run folders (e.g. benchmarks/out/ssl-cpu/improved-gan-labels50-seed0)")
    args = ap.parse_args()
    if args.confusion:
        for run in args.confusion:
            confusion(run)
        return
    if args.write_doc:
        update_doc()
        return
    check_sets(args.set)
    seeds = [int(s) for s in args.seeds.split(",")]
    variants = (False,) if args.no_baseline else (False, True)
    plan = [("improved-gan", s, args.epochs, b) for b in variants for s in seeds if args.epochs]
    if args.ssgan_epochs:
        plan += [("ssgan", seeds[0], args.ssgan_epochs, b) for b in variants]
    if args.resume_epochs:
        plan = [("improved-gan", s, args.resume_epochs, False) for s in seeds]
    if not plan:
        raise SystemExit("--epochs 0 skips improved-gan: give --ssgan-epochs too, or there is nothing to run")
    dev = args.device.split(":")[0]
    res = {**provenance(), "device": "a GPU" if dev == "cuda" else "a CPU", "jobs": args.jobs, "runs": []}
    OUT.mkdir(parents=True, exist_ok=True)
    tag = "-".join(filter(None, [args.precision, args.tag or "-".join(i.partition("=")[0] for i in args.set)]))
    res["settings"] = args.set
    name = (f"ssl-{dev}{f'-e{args.resume_epochs:g}' if args.resume_epochs else ''}{f'-{tag}' if tag else ''}"
            f"{'-ssgan' if not args.epochs and not args.resume_epochs else ''}.json")  # never overwrite the improved-gan results

    def save(rows: list[dict]) -> None:  # after every batch: a run stopped part-way keeps the runs that finished
        write_text_atomic(OUT / name, json.dumps({**res, "runs": rows}, indent=2))
        print(f"wrote {OUT / name} ({len(rows)} of {len(plan)} runs)", flush=True)

    run_all(plan, args.device, args.jobs, resume=bool(args.resume_epochs), precision=args.precision,
            sets=tuple(args.set), tag=tag, done=save)


if __name__ == "__main__":
    main()
