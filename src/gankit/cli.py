"""Command line: one subcommand per verb, each calling one library function."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time

from gankit.errors import GankitError, Interrupted
from gankit.config import PRECISIONS, SEEDS
from gankit.metrics import METRICS

EXAMPLES = """examples:
  gankit recipes
  gankit info cs231n-dcgan --noise-dim 4
  gankit train cs231n-dcgan --epochs 1 --out runs/dcgan
  gankit train wgan-gp --dataset fashion-mnist --set image_size=32 --steps 2000
  gankit train dcgan64 --dataset folder:~/pictures/faces --epochs 5
  gankit train toy --dataset toy:grid25
  gankit train improved-gan --labels 10 --data-seed 1 --epochs 20 --out runs/ssl
  gankit train improved-gan --baseline --epochs 20 --out runs/ssl-baseline
  gankit eval runs/ssl --metrics accuracy
  gankit train --resume runs/dcgan --epochs 3
  torchrun --nproc_per_node=4 -m gankit train dcgan64 --dataset folder:faces --out runs/faces
  gankit sample runs/dcgan -n 64 -o grid.png --seed 1
  gankit train cgan --out runs/cgan && gankit sample runs/cgan --class 7 -n 64 -o sevens.png
  gankit export runs/dcgan --format onnx -o generator.onnx
  gankit demo runs/dcgan -o site && python -m http.server -d site
"""


def _positive(kind):
    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}") from None
        if v <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return v
    return parse


def _seed(text: str) -> int:
    """--seed of sample and eval: in the range train takes (config.validate), so torch never overflows."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if v not in SEEDS:
        raise argparse.ArgumentTypeError(f"must be in 0..2^63-1, got {text}")
    return v


# The train flags that set one config field each: (flag, field, argparse options). --set KEY=VALUE reaches them all.
TRAIN_FLAGS = [
    ("--dataset", "dataset", dict(help="mnist | fashion-mnist | folder:PATH | toy:ring8 | toy:grid25")),
    ("--data-dir", "data_dir", dict(help="folder with the IDX files (or where to download them)")),
    ("--steps", "steps", dict(type=_positive(int), help="total generator steps")),
    ("--epochs", "epochs", dict(type=_positive(float), help="passes over the training split (default: the recipe's)")),
    ("--batch-size", "batch_size", dict(type=_positive(int))),
    ("--seed", "seed", dict(type=int)),
    ("--device", "device", dict(help="auto | cpu | cuda | cuda:N (default auto)")),
    ("--out", "out", dict(help="run folder (default runs/RECIPE-TIME)")),
    ("--precision", "precision", dict(choices=PRECISIONS, help="auto (default): bf16 autocast where the device runs "
                                      "bf16 natively (AMX, AVX-512 BF16, CUDA sm_80+), else float32; bf16 or fp32 "
                                      "to force one")),
    ("--threads", "threads", dict(type=_positive(int), help="CPU threads per process (default: all cores)")),
    ("--compile", "compile", dict(action="store_true", default=None, help="torch.compile G and D")),
    ("--eval-every", "eval_every", dict(type=_positive(int), help="every N steps, write fid/is/modes to "
                                        "metrics.jsonl and keep checkpoint-best.pt (mnist, fashion-mnist)")),
    ("--tensorboard", "tensorboard", dict(action="store_true", default=None,
                                          help="also log to RUN/tensorboard (needs: pip install tensorboard)")),
    ("--labels", "labels_per_class", dict(type=_positive(int), metavar="N", help="semi-supervised: N labelled "
                                          "images per class (recipes ssgan, improved-gan)")),
    ("--label-rate", "label_rate", dict(type=float, metavar="R", help="semi-supervised: label this fraction of the "
                                        "training split instead (e.g. 0.2)")),
    ("--limit", "limit", dict(type=_positive(int), metavar="N", help="train on N images of the training split, "
                              "drawn with --data-seed (a small-data run, e.g. with --set diffaugment=...)")),
    ("--data-seed", "data_seed", dict(type=int, help="seed that picks the labelled subset and --limit's images "
                                      "(default 0)")),
    ("--baseline", "baseline", dict(action="store_true", default=None, help="supervised-only baseline: train the "
                                    "recipe's classifier on the labelled subset alone")),
]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, like every other refusal, instead of usage + error
        self.exit(2, f"gankit: error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="gankit", description="Train classic GANs on MNIST and small image sets.",
                                epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="verb", required=True, metavar="{recipes,info,train,sample,eval,report,export,demo}")

    sub.add_parser("recipes", help="list the recipes and their sources")

    info = sub.add_parser("info", help="print a recipe's resolved settings and parameter counts as JSON")
    info.add_argument("recipe")
    info.add_argument("--noise-dim", type=_positive(int))
    info.add_argument("--dataset")
    info.add_argument("--image-size", type=_positive(int))

    t = sub.add_parser("train", help="train a recipe (or --resume a run)", epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("recipe", nargs="?", help="recipe name (see `gankit recipes`)")
    t.add_argument("--resume", metavar="RUN", help="continue the run in this folder from its checkpoint "
                   "(with --dataset folder:NEWPATH where a folder run's images moved)")
    budget = t.add_mutually_exclusive_group()
    for flag, field, kwargs in TRAIN_FLAGS:
        (budget if field in ("steps", "epochs") else t).add_argument(flag, dest=field, **kwargs)
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config field, e.g. --set lr_g=1e-4 (repeatable)")
    t.add_argument("--overwrite", action="store_true", help="replace an existing run folder at --out")
    t.add_argument("--dry-run", action="store_true", help="print the resolved config as JSON (with --resume: "
                   "the config the run would continue with) and exit; the precision it gets on this machine, and the "
                   "rule for diffaugment=auto, go to stderr")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")

    s = sub.add_parser("sample", help="write a grid of samples from a run or checkpoint")
    s.add_argument("run", metavar="RUN_OR_CHECKPOINT")
    s.add_argument("-n", type=_positive(int), default=64, help="number of samples (default 64; a conditional run "
                   "without --class draws a row per class: n rounded down to a multiple of the classes, at least one each)")
    s.add_argument("-o", "--output", default="grid.png", help="PNG to write (default grid.png)")
    s.add_argument("--seed", type=_seed, default=0, help="seeds the noise (default 0)")
    s.add_argument("--device", default="auto")
    s.add_argument("--class", dest="label", type=int, metavar="K", help="a conditional run (cgan, acgan, cdcgan): draw "
                   "class K only (default: a grid with a row per class)")
    s.add_argument("--no-ema", action="store_true", help="the raw G, not the moving average of its weights "
                   "(which a run with g_ema uses by default)")

    e = sub.add_parser("eval", help="score a run's generator against the test split (a folder's run: fid_inception "
                       "against the folder's images); writes RUN/metrics.json, adding to the scores there of the same "
                       "checkpoint, --seed, --num-samples and G (--no-ema)")
    e.add_argument("run", metavar="RUN_OR_CHECKPOINT")
    e.add_argument("--metrics", help="comma-separated, of: " + "; ".join(f"{m.name}: {m.doc}".replace("%", "%%") for m in METRICS.values())
                   + " (default fid,is,pr,modes, plus accuracy for a semi-supervised run and class_acc for a "
                   "conditional one; fid_inception for a run on folder:PATH)")
    e.add_argument("--num-samples", type=_positive(int), default=10_000, help="generated and real images (default 10000; a folder: all "
                   "its images where it holds fewer)")
    e.add_argument("--seed", type=_seed, default=0, help="seeds the noise (default 0)")
    e.add_argument("--device", default="auto")
    e.add_argument("--no-ema", action="store_true", help="score the raw G, not the moving average of its weights")

    r = sub.add_parser("report", help="write RUN/report.html from the run folder")
    r.add_argument("run", metavar="RUN")
    r.add_argument("-o", "--output", help="HTML file to write (default RUN/report.html)")

    x = sub.add_parser("export", help="write a run's generator alone, with its noise and output contract, "
                       "as ONNX or TorchScript")
    x.add_argument("run", metavar="RUN_OR_CHECKPOINT")
    x.add_argument("--format", choices=["onnx", "torchscript"], help="onnx (needs pip install onnxscript) or "
                   "torchscript (read back with gankit.export.load_torchscript); default: the one -o's suffix names "
                   "(.onnx, .pt), else onnx")
    x.add_argument("-o", "--output", help="file to write (default generator.onnx or generator.pt)")
    x.add_argument("--no-ema", action="store_true", help="the raw G, not the moving average of its weights "
                   "(which a run with g_ema exports by default)")

    w = sub.add_parser("demo", help="write a static web page that draws the run's generator in the browser "
                       "(onnxruntime-web, offline); serve it over http")
    w.add_argument("run", metavar="RUN_OR_CHECKPOINT")
    w.add_argument("-o", "--output", default="site", help="folder to write (default site); gankit's files in it "
                   "are replaced")
    w.add_argument("--ort-dir", metavar="DIR", help="take onnxruntime-web's files from DIR (ort.wasm.min.js and "
                   "what it loads) instead of fetching the pinned npm package with npm")
    w.add_argument("--no-ema", action="store_true", help="the raw G, not the moving average of its weights")
    return p


def _overrides(args) -> dict:
    from gankit.config import parse_sets

    o = {field: getattr(args, field) for _, field, _ in TRAIN_FLAGS if getattr(args, field) is not None}
    sets = parse_sets(args.set)
    o.update(sets)
    # one kind of labelled subset (--labels, --label-rate, or a nonzero --set of one) replaces the recipe's other kind
    if args.labels_per_class is not None or sets.get("labels_per_class"):
        o.setdefault("label_rate", 0.0)
    if args.label_rate is not None or sets.get("label_rate"):
        o.setdefault("labels_per_class", 0)
    return o


def cmd_recipes(args) -> None:
    from gankit.recipes import RECIPES

    width = max(map(len, RECIPES))
    for r in RECIPES.values():
        print(f"{r.name:<{width}}  {r.source}")


def cmd_info(args) -> None:
    from gankit.recipes import describe

    over = {k: v for k, v in (("noise_dim", args.noise_dim), ("dataset", args.dataset),
                              ("image_size", args.image_size)) if v is not None}
    print(json.dumps(describe(args.recipe, **over), indent=2))


def cmd_train(args) -> None:
    from gankit.config import validate
    from gankit.recipes import get
    from gankit.train import resume, resumed_config, train

    over = _overrides(args)
    progress = not args.no_progress
    if args.resume:
        if args.recipe:
            raise GankitError("--resume RUN takes no recipe: the run's own config is used")
        if args.overwrite:
            raise GankitError(f"--overwrite with --resume {args.resume}: --resume continues the run, --overwrite "
                              f"starts it again; give one")
        if args.dry_run:
            return dry_run(resumed_config(args.resume, **over)[0])
        summary = resume(args.resume, progress=progress, **over)
    else:
        if not args.recipe:
            raise GankitError("train: give a RECIPE (see `gankit recipes`) or --resume RUN")
        recipe = get(args.recipe)
        over.setdefault("out", f"runs/{recipe.name}-{time.strftime('%Y%m%d-%H%M%S')}")
        if "epochs" in over and "steps" not in over:  # the recipe's step budget gives way; a given one wins
            over["steps"] = None
        cfg = recipe.config(**over)
        validate(cfg)
        if args.dry_run:
            return dry_run(cfg)
        summary = train(cfg, overwrite=args.overwrite, progress=progress)
    if _speaks_for_job():
        print(json.dumps(summary))


def _speaks_for_job() -> bool:
    """Whether this process prints for the job: under torchrun, rank 0 alone; outside it, always."""
    from gankit.distributed import from_env

    return from_env().main


def dry_run(cfg) -> None:
    """--dry-run: the config as JSON on stdout; what its precision and `auto` settings become here on stderr."""
    from gankit.train import dry_run_notes

    notes = dry_run_notes(cfg)  # first: a --device this machine lacks fails before anything is printed
    if _speaks_for_job():
        print(cfg.to_json())
        for note in notes:
            print(f"gankit: {note}", file=sys.stderr)


def cmd_sample(args) -> None:
    from gankit.sample import sample

    print(sample(args.run, n=args.n, out=args.output, seed=args.seed, device=args.device, ema=not args.no_ema,
                 label=args.label))


def cmd_eval(args) -> None:
    from gankit.evaluate import evaluate_run, read_metrics, same_evaluation
    from gankit.run import find_checkpoint

    path = find_checkpoint(args.run).parent / "metrics.json"
    earlier = read_metrics(path)
    result = evaluate_run(args.run, metrics=args.metrics, num_samples=args.num_samples, device=args.device,
                          seed=args.seed, write=True, ema=not args.no_ema)
    width = max(map(len, result))
    for k, v in result.items():
        if not k.endswith("_floor"):
            floor = result.get(f"{k}_floor")
            if isinstance(v, list):  # per class
                print(f"{k:<{width}}  {' '.join(f'{x:.3f}' for x in v)}")
                continue
            print(f"{k:<{width}}  {v:>12.4g}" if isinstance(v, float) else f"{k:<{width}}  {v!s:>12}",
                  f"  (real vs real: {floor:.4g})" if isinstance(floor, (int, float)) else "")
    if same_evaluation(earlier, result):
        kept = [k for k in earlier if k not in result and not k.endswith("_floor") and k != "evaluator"]
        print(f"wrote {path}" + (f" (kept {', '.join(kept)} from an earlier evaluation of this checkpoint)" if kept else ""))
    else:
        print(f"wrote {path}" + (" (in place of its scores of another checkpoint, evaluator, sample count, seed or G)"
                                 if isinstance(earlier, dict) else ""))


def cmd_report(args) -> None:
    from gankit.report import build_report

    print(build_report(args.run, args.output))


def cmd_export(args) -> None:
    from gankit.export import export

    print(export(args.run, args.output, fmt=args.format, ema=not args.no_ema))


def cmd_demo(args) -> None:
    from gankit.demo import demo

    out = demo(args.run, args.output, ort_dir=args.ort_dir, ema=not args.no_ema)
    print(out)
    print(f"gankit: serve it over http to open it (a browser will not run it from file://): python -m http.server "
          f"-d {shlex.quote(str(out))}, then http://localhost:8000/", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        {"recipes": cmd_recipes, "info": cmd_info, "train": cmd_train, "sample": cmd_sample, "eval": cmd_eval,
         "report": cmd_report, "export": cmd_export,
         "demo": cmd_demo}[args.verb](args)
    except GankitError as e:
        if not isinstance(e, Interrupted) or _speaks_for_job():  # every rank stops at the same step; one says so
            print(f"gankit: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # training's loop stops at a step and checkpoints; this is before it, or a second Ctrl-C
        print(f"gankit: {args.verb} interrupted; " + ("the run folder keeps its last checkpoint, if it saved one "
              "(gankit train --resume RUN goes on from it)" if args.verb == "train" else
              "every file it writes is replaced whole or not at all"), file=sys.stderr)
        return 130
    return 0
