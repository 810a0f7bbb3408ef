"""Draw FID against training time for run folders trained with `--eval-every`, one line each.

    python benchmarks/curve.py benchmarks/out/wgan-100 -o docs/curves/wgan-100.png
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
    ap.add_argument("--label", action="append", default=[], help="legend entry per run (default: the folder's name)")
    ap.add_argument("-o", "--output", type=Path, required=True, help="the PNG to write")
    args = ap.parse_args()
    if args.label and len(args.label) != len(args.runs):
        raise SystemExit(f"--label: {len(args.label)} given for {len(args.runs)} runs; give one per run or none")
    lines = {}
    for run, label in zip(args.runs, args.label or [r.name for r in args.runs]):
        try:
            points = fid_over_time(run)
        except (OSError, ValueError, KeyError) as e:
            raise SystemExit(f"{run}: no FID curve to draw (needs stats.jsonl and the metrics.jsonl of "
                             f"`gankit train --eval-every`): {e}") from None
        if not points:
            raise SystemExit(f"{run}: metrics.jsonl holds no evaluation; train with --eval-every")
        lines[label] = points
    curve(lines, args.output, f"training time, s ({machine()})")
    print(f"wrote {args.output} ({', '.join(f'{k}: {len(v)} points' for k, v in lines.items())})")


if __name__ == "__main__":
    main()
