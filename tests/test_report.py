"""report.html from a run folder, and the page rendered in headless Chromium."""

import json
import os
import re
import shutil
import subprocess

import pytest

from gankit.errors import GankitError
from gankit.recipes import RECIPES
from gankit.report import build_report
from gankit.train import train

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "run"
    cfg = RECIPES["toy"].config(out=str(out), steps=300, log_every=20, sample_every=100)
    train(cfg, progress=False)
    (out / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "fid": 30.0 - s / 100}) + "\n" for s in (100, 200, 300)))
    (out / "metrics.json").write_text(json.dumps({"dataset": "toy:ring8", "num_samples": 2000, "fid": 27.0,
                                                  "fid_floor": 0.5, "is": 8.1, "is_floor": 9.9}))
    return out


def test_report_holds_grids_curves_metrics_and_config(run):
    page = build_report(run).read_text()
    assert page.count("data:image/png;base64,") == 4 + 1  # 4 grids in the slider data, 1 shown
    assert page.count('class="chart"') == 4  # losses, D(x)/D(G(z)), throughput, fid over training
    assert "real vs real (floor)" in page and ">27<" in page and ">0.5<" in page
    assert "<td>loss</td><td>&quot;nonsaturating&quot;</td>" in page
    assert not re.search(r"(src|href)=[\"']?(https?:|//)", page)  # nothing to fetch: opens offline


@pytest.fixture
def conditional_run(tmp_path, tiny_data):
    out = tmp_path / "cgan"
    train(RECIPES["cgan"].config(out=str(out), dataset="fashion-mnist", steps=2, batch_size=16, log_every=1,
                                 sample_every=1, grid_size=20), progress=False)
    (out / "metrics.json").write_text(json.dumps({"dataset": "fashion-mnist", "num_samples": 100, "class_acc": 0.8,
                                                  "class_acc_floor": 0.9, "class_acc_by_class": [0.5] + [0.75] * 9,
                                                  "class_acc_by_class_floor": [0.25] * 10}))
    return out


def test_a_conditional_run_shows_its_class_grid_and_per_class_accuracy(conditional_run, run):
    page = build_report(conditional_run).read_text()
    section = re.search(r'<section id="classes">.*?</section>', page).group(0)
    assert re.search(r'<img alt="class grid[^>]*src="data:image/png;base64,', section)
    assert "<li>T-shirt/top</li>" in section and "<li>Ankle boot</li>" in section  # a label per grid row
    assert section.count("<li>") == 10 and "step 2" in section
    assert "<tr><td>T-shirt/top</td><td>0.5</td><td>0.25</td></tr>" in section
    assert "<tr><td>Ankle boot</td><td>0.75</td><td>0.25</td></tr>" in section
    assert 'id="classes"' not in build_report(run).read_text()  # an unconditional run has no class grid


def test_a_conditional_run_without_grids_or_metrics_still_reports(conditional_run):
    for p in (conditional_run / "samples").glob("*.png"):
        p.unlink()
    (conditional_run / "metrics.json").unlink()
    section = re.search(r'<section id="classes">.*?</section>', build_report(conditional_run).read_text()).group(0)
    assert "No class grid yet" in section and "<img" not in section and "<table" not in section


def test_report_errors_name_the_folder(tmp_path):
    with pytest.raises(GankitError, match="not a gankit run folder"):
        build_report(tmp_path)
    (tmp_path / "config.json").write_text("{")  # a broken config.json alone: not known to be gankit's
    with pytest.raises(GankitError, match="not a gankit run folder"):
        build_report(tmp_path)
    (tmp_path / ".gankit-run.json").write_text('{"gankit": "run folder"}')  # gankit's folder, broken config
    with pytest.raises(GankitError, match="config.json: not valid JSON"):
        build_report(tmp_path)
    assert not (tmp_path / "report.html").exists()


def chromium(*args, tmp_path):
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"), reason="chromium not installed (apt install chromium)")
def test_report_renders_in_headless_chromium(run, tmp_path):
    assert CHROMIUM, "CI must install chromium (.ci/run does)"
    page = build_report(run)
    p = chromium("--dump-dom", page.as_uri(), tmp_path=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    console = [line for line in p.stderr.splitlines() if ":CONSOLE" in line]
    assert console == []  # no errors (nor any other console output) from the page's script
    dom = p.stdout
    assert re.search(r'<img id="grid"[^>]*src="data:image/png;base64,', dom)
    assert dom.count("<polyline") >= 5
    shot = run / "report.png"
    p = chromium("--window-size=1000,1400", f"--screenshot={shot}", page.as_uri(), tmp_path=tmp_path)
    assert p.returncode == 0 and shot.stat().st_size > 10_000


def test_console_errors_would_be_caught(tmp_path):
    """The check above can fail: a page with a script error shows up on Chromium's console log."""
    if CHROMIUM is None:
        pytest.skip("chromium not installed")
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><script>undefinedFunction();</script></body></html>")
    p = chromium("--dump-dom", bad.as_uri(), tmp_path=tmp_path)
    assert any("Uncaught ReferenceError" in line for line in p.stderr.splitlines() if ":CONSOLE" in line)


def test_report_names_a_broken_stats_line(run, tmp_path):
    import shutil as sh

    broken = tmp_path / "broken"
    sh.copytree(run, broken)
    with open(broken / "stats.jsonl", "a") as f:
        f.write('{"step": 9\n')
    with pytest.raises(GankitError, match=r"stats.jsonl: line \d+ is not JSON"):
        build_report(broken)


def test_a_copied_grid_is_skipped_and_a_missing_config_is_named(run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    shutil.copyfile(copy / "samples" / "step-000100.png", copy / "samples" / "step-000100 (1).png")  # a user's copy
    assert build_report(copy).read_text().count("data:image/png;base64,") == 4 + 1  # the trainer's grids only
    (copy / "config.json").unlink()
    (copy / "report.html").unlink()
    with pytest.raises(GankitError, match=r"run/config.json: missing; is .*run a whole gankit run folder"):
        build_report(copy)
    assert not (copy / "report.html").exists()


def test_grids_past_a_million_steps_the_folder_named_dot_and_what_was_scored(run, tmp_path, monkeypatch):
    """Grids go by step, not by name (step-1000000 sorts before step-200000); `gankit report .`
    names the folder; metrics.json's sample count and a toy's mode total are not listed as metrics."""
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    grid = (copy / "samples" / "step-000300.png").read_bytes()
    (copy / "samples" / "step-200000.png").write_bytes(grid)
    (copy / "samples" / "step-1000000.png").write_bytes(grid)
    (copy / "metrics.json").write_text(json.dumps({"dataset": "toy:ring8", "num_samples": 10000, "modes": 7,
                                                   "modes_of": 8, "modes_floor": 8}))
    monkeypatch.chdir(copy)
    page = build_report(".").read_text()
    assert 'step <span id="step">1000000</span>' in page
    frames = json.loads(re.search(r"const frames = (\[.*?\]);", page)[1])
    assert [f["step"] for f in frames] == [0, 100, 200, 300, 200000, 1000000]
    assert "<title>gankit report: run</title>" in page and "<h1>gankit run: run</h1>" in page
    assert "<td>modes</td><td>7 of 8</td><td>8</td>" in page
    assert "<td>num_samples</td>" not in page and "<td>modes_of</td>" not in page
