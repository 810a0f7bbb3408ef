"""docs/tutorial.md, run: every `gankit` line of its ```sh blocks goes through the real CLI (gankit.cli.main)
in a scratch folder, on tiny_data's fake images (a folder of real PNG files for folder:PATH), with the budget cut
to 1 step of 16 images (evaluated at that step where the line asks for --eval-every); each must exit 0 and leave
the files it promises. Its pictures and links must exist."""

import json
import os
import re
import shlex
from pathlib import Path

import pytest
import torch
from PIL import Image

from gankit.cli import main
from gankit.data import load as real_load
from gankit.errors import GankitError
from gankit.metrics import DEFAULT_METRICS, METRICS
from gankit.recipes import RECIPES

DOCS = Path(__file__).resolve().parents[1] / "docs"
TUTORIAL = DOCS / "tutorial.md"
NOT_RUN = "# not run in the test"  # a line may opt out with this trailing comment; none does today


def commands_by_section(text: str) -> dict[str, list[str]]:
    """'## heading' -> the `gankit ...` lines of its ```sh blocks, in order."""
    found, heading, fence = {}, None, None
    for line in text.splitlines():
        if line.startswith("```"):
            fence = line[3:].strip() if fence is None else None
        elif fence is None and line.startswith("## "):
            heading = line[3:].strip()
        elif fence == "sh" and line.startswith("gankit ") and NOT_RUN not in line:
            assert not line.rstrip().endswith("\\"), f"one command per line: {line}"
            found.setdefault(heading, []).append(line)
    return found


SECTIONS = commands_by_section(TUTORIAL.read_text())


def option(args: list[str], *flags: str, default=None):
    """The value after the last of `flags` in args, else default."""
    picked = [args[i + 1] for i, a in enumerate(args[:-1]) if a in flags]
    return picked[-1] if picked else default


def without(args: list[str], *flags: str) -> list[str]:
    """args less each of `flags` and the value after it."""
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a in flags:
            skip = True
        else:
            out.append(a)
    return out


def shrink(args: list[str], pictures: Path) -> list[str]:
    """The tutorial's command with a test budget: 1 step of 16 images, all of tiny_data's images, 16 px
    for a 64 px recipe on MNIST, 100 samples to evaluate, your folder of pictures replaced by `pictures`.
    Every other flag reaches the parser as written, so a wrong one fails the test."""
    verb = args[0]
    if verb == "train":
        args = [f"folder:{pictures}" if a.startswith("folder:") else a for a in args]
        args = without(args, "--epochs", "--steps", "--batch-size")
        args += ["--steps", "1", "--batch-size", "16", "--no-progress"]
        if "--limit" not in args:  # all of tiny_data's 256 images (tlx-mlp's recipe takes 50,000)
            args += ["--set", "limit=0"]
        small = not any(a.startswith(("folder:", "image_size=")) for a in args)
        if small and RECIPES[args[1]].config().image_size == 64:  # MNIST at 16 px: the 64 px code path, faster
            args += ["--set", "image_size=16"]
        if "--eval-every" in args:
            args = without(args, "--eval-every") + ["--eval-every", "1", "--set", "eval_samples=100"]
    if verb == "eval":
        args = without(args, "--num-samples") + ["--num-samples", "100"]
    return args


def check_outputs(args: list[str]) -> None:
    """The files the command promises (as the tutorial names them), present and readable."""
    verb, run = args[0], args[1]  # every verb after train takes the run (or its checkpoint) first
    if verb == "train":
        out = Path(option(args, "--out") or pytest.fail(f"give every train command an --out: {args}"))
        assert (out / "checkpoint.pt").is_file() and (out / "config.json").is_file(), args
        if "--eval-every" in args:
            assert (out / "metrics.jsonl").read_text().strip(), args
    elif verb == "sample":
        Image.open(option(args, "-o", "--output", default="grid.png")).verify()
    elif verb == "eval":
        result = json.loads((Path(run) / "metrics.json").read_text())
        if result["dataset"].startswith("toy:"):  # 2-D points: mode coverage
            assert {"modes", "modes_of", "high_quality"} <= set(result), (args, result)
            return
        names = option(args, "--metrics", default=",".join(DEFAULT_METRICS)).split(",")
        missing = [k for n in names for k in METRICS[n].keys if k not in result]
        assert not missing, (args, missing)
    elif verb == "report":
        page = Path(option(args, "-o", "--output", default=Path(run) / "report.html")).read_text()
        assert "<html" in page.lower(), args
    elif verb == "export":
        fmt = option(args, "--format", default="onnx")
        out = Path(option(args, "-o", "--output", default="generator.onnx" if fmt == "onnx" else "generator.pt"))
        assert out.stat().st_size > 0, args
    elif verb == "demo":
        assert (Path(option(args, "-o", "--output", default="site")) / "index.html").is_file(), args


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    """A folder of 32 small RGB PNGs: someone's pictures, for `--dataset folder:PATH` (read, never written)."""
    folder = tmp_path_factory.mktemp("pictures")
    g = torch.Generator().manual_seed(0)
    for i in range(32):
        pixels = torch.randint(0, 256, (20, 24, 3), generator=g, dtype=torch.uint8).numpy()
        Image.fromarray(pixels).save(folder / f"{i:02d}.png")
    return folder


def test_every_lesson_has_commands():
    lessons = [h for h in SECTIONS if h.startswith("Lesson")]
    assert len(lessons) == 5 and any(h.startswith("Beyond") for h in SECTIONS), list(SECTIONS)


@pytest.fixture(scope="module")
def stats(tmp_path_factory):
    """The cache of the fake images' statistics for the module's sections, as ~/.cache/gankit is for a reader's."""
    return tmp_path_factory.mktemp("stats")


@pytest.mark.parametrize("heading", list(SECTIONS), ids=lambda h: h.split(":")[0].lower().replace(" ", "-"))
def test_section_commands_run(heading, tmp_path, pictures, stats, tiny_data, monkeypatch, capsys):
    # real files for folder:PATH; the fake images' statistics cached in a scratch folder, not ~/.cache/gankit
    monkeypatch.setattr("gankit.data.load", lambda spec, *a, **k:
                        real_load(spec, *a, **k) if spec.startswith("folder:") else tiny_data(spec, *a, **k))
    monkeypatch.setattr("gankit.evaluate.default_cache_dir", lambda: stats)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    for line in SECTIONS[heading]:
        args = shrink(shlex.split(line, comments=True)[1:], pictures)
        if args[0] == "demo" and not os.environ.get("CI"):
            try:
                from gankit.demo import ort_files
                ort_files()
            except GankitError as e:  # no cached onnxruntime-web and no npm: the rest of the section still ran
                pytest.skip(f"{line}: {e}")
        try:
            rc = main(args)
        except SystemExit as e:  # argparse: an unknown flag, a bad value
            rc = e.code
        out = capsys.readouterr()
        assert rc in (0, None), f"{line}\n  ran as: gankit {shlex.join(args)}\n  exit {rc}: {out.err[-2000:]}"
        check_outputs(args)


def test_pictures_and_links_exist():
    text = TUTORIAL.read_text()
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    assert targets and any(t.endswith(".png") for t in targets)
    missing = [t for t in targets if not t.startswith("http") and not (DOCS / t).is_file()]
    assert not missing, missing
