"""Draw FID against training time for run folders trained with `--eval-every`, one line each.

    python benchmarks/curve.py benchmarks/out/wgan-150 -o docs/curves/wgan-150.png
    python benchmarks/curve.py runs/a runs/b --label a --label b -o curves.png

The points are the run's metrics.jsonl (FID in gankit's evaluator embedding at each evaluation),
placed at the training time stats.jsonl logged for their step; a resumed run's clock goes on from
where its first session stopped. The x label names this machine: draw the curve where it trained.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common import curve, fid_over_time, machine


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path, help="run folders")
    ap.add_argument("--label", action="append", default=[], help="legend entry per run (default: the folder as given)")
    ap.add_argument("-o", "--output", type=Path, required=True, help="the PNG to write")
    args = ap.parse_args()
    if args.label and len(args.label) != len(args.runs):
        raise SystemExit(f"--label: {len(args.label)} given for {len(args.runs)} runs; give one per run or none")
    labels = args.label or [str(r) for r in args.runs]
    if len(set(labels)) != len(labels):
        raise SystemExit(f"--label: each run needs its own legend entry, got {', '.join(labels)}")
    if args.output.suffix.lower() != ".png":
        raise SystemExit(f"-o {args.output}: the curve is a PNG; name the file NAME.png")
    lines = {}
    for run, label in zip(args.runs, labels):
        for name in ("stats.jsonl", "metrics.jsonl"):
            if not (run / name).is_file():
                raise SystemExit(f"{run}: no {name}; draw a run folder of `gankit train --eval-every N`")
        try:
            points = fid_over_time(run)
        except (ValueError, KeyError) as e:
            raise SystemExit(f"{run}: its stats.jsonl or metrics.jsonl is not a gankit run's log "
                             f"({type(e).__name__}: {e})") from None
        if not points:
            raise SystemExit(f"{run}: metrics.jsonl holds no evaluation; train with --eval-every")
        lines[label] = points
    args.output.parent.mkdir(parents=True, exist_ok=True)
    curve(lines, args.output, f"training time, s ({machine()})")
    print(f"wrote {args.output} ({', '.join(f'{k}: {len(v)} points' for k, v in lines.items())})")


if __name__ == "__main__":
    main()
