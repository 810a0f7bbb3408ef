"""Does bf16 autocast change what a recipe learns? Train the same recipe in fp32 and bf16 over
several seeds and compare a quality metric (FID in the MNIST evaluator's embedding, and IS).

    python benchmarks/precision.py                          # cs231n-gan 2 epochs, cs231n-dcgan 1 epoch, seeds 0-2
    python benchmarks/precision.py --recipes cs231n-lsgan --epochs 2 --seeds 0,1,2,3

The two precisions agree "within noise" when the gap between their mean FIDs is smaller than the
spread across seeds. Results go to benchmarks/out/precision.json and into docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import throughput
from common import OUT, hardware_record, provenance

EPOCHS = {"cs231n-gan": 2, "cs231n-dcgan": 1}


def main() -> None:
    from gankit.evaluate import evaluate_run
    from gankit.recipes import get
    from gankit.train import train

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipes", default=",".join(EPOCHS))
    ap.add_argument("--epochs", type=float, help="budget for every recipe listed (default: EPOCHS)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--num-samples", type=int, default=5000)
    args = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.recipes.split(","):
            epochs = args.epochs or EPOCHS.get(name, 1)
            for precision in ("fp32", "bf16"):
                for seed in map(int, args.seeds.split(",")):
                    out = Path(tmp) / f"{name}-{precision}-{seed}"
                    cfg = get(name).config(epochs=epochs, seed=seed, precision=precision, out=str(out))
                    s = train(cfg, progress=False)
                    m = evaluate_run(out, metrics=("fid", "is"), num_samples=args.num_samples, progress=False)
                    row = {"recipe": name, "epochs": epochs, "precision": precision, "seed": seed,
                           "fid": m["fid"], "is": m["is"], "train_s": s["wall_s"], "images_per_s": s["images_per_s"]}
                    print(json.dumps(row), flush=True)
                    results.append(row)
    summary = []
    for name in args.recipes.split(","):
        line = {"recipe": name, "epochs": args.epochs or EPOCHS.get(name, 1)}
        for precision in ("fp32", "bf16"):
            rows = [r for r in results if r["recipe"] == name and r["precision"] == precision]
            fids = [r["fid"] for r in rows]
            line[precision] = {"fid_mean": statistics.mean(fids), "fid_std": statistics.stdev(fids) if len(fids) > 1 else 0.0,
                               "fids": fids, "is_mean": statistics.mean(r["is"] for r in rows),
                               "train_s_mean": statistics.mean(r["train_s"] for r in rows)}
        gap = abs(line["fp32"]["fid_mean"] - line["bf16"]["fid_mean"])
        line["within_noise"] = gap <= max(line["fp32"]["fid_std"], line["bf16"]["fid_std"])
        summary.append(line)
    OUT.mkdir(parents=True, exist_ok=True)
    hw = hardware_record("cpu")
    doc = {**provenance(), "hardware": hw, "num_samples": args.num_samples, "seeds": args.seeds, "runs": results, "summary": summary}
    (OUT / "precision.json").write_text(json.dumps(doc, indent=2))
    tp = OUT / f"throughput-{hw['machine_class']}.json"  # this machine class's section of docs/performance.md
    if tp.exists():
        throughput.update_doc(json.loads(tp.read_text()))
    for line in summary:
        print(f"{line['recipe']}: FID fp32 {line['fp32']['fid_mean']:.2f} ± {line['fp32']['fid_std']:.2f}, "
              f"bf16 {line['bf16']['fid_mean']:.2f} ± {line['bf16']['fid_std']:.2f}, within noise: {line['within_noise']}")


if __name__ == "__main__":
    main()
