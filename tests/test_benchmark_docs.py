"""The benchmark scripts that write docs/results.md keep what no results file on this machine
covers: results files live in the git-ignored benchmarks/out, so a clean checkout has none, and a
re-run of one benchmark must not erase the measurements of the others."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

recipes_bench = pytest.importorskip("recipes")
ssl_bench = pytest.importorskip("ssl_mnist")
DOC = (ROOT / "docs" / "results.md").read_text()


def test_with_no_results_files_the_doc_is_written_back_unchanged():
    from gankit.recipes import RECIPES

    assert ssl_bench.render_doc([], DOC) == DOC
    assert recipes_bench.render_doc({}, DOC, list(RECIPES)) == DOC


def test_a_new_semi_supervised_result_is_added_beside_the_old_ones():
    run = {"recipe": "improved-gan", "seed": 0, "epochs": 2, "baseline": False, "labelled": 100,
           "precision": "fp32", "test_errors": 1234, "test_acc": 0.8766, "wall_s": 60.0, "steps": 1200,
           "curve": [(600, 2000), (1200, 1234)]}
    res = {"command": "python benchmarks/ssl_mnist.py --seeds 0 --epochs 2", "machine": "a test machine",
           "date": "2026-01-01", "device": "a CPU", "jobs": 1, "settings": [], "runs": [run]}
    new = ssl_bench.render_doc([res], DOC)
    assert len(ssl_bench.old_blocks(new)) == len(ssl_bench.old_blocks(DOC)) + 1
    assert "**1234** (1234)" in new and new.count(ssl_bench.BEGIN) == 1
    assert ssl_bench.render_doc([res], new) == new  # the same results file again: the same doc


def test_a_new_recipe_row_replaces_only_its_own():
    from gankit.recipes import RECIPES

    row = {"recipe": "wgan", "dataset": "mnist", "epochs": 3, "steps": 561, "wall_s": 600.0, "train_s": 550.0,
           "images_per_s": 300.0, "final": {}, "metrics": {"fid": 12.5, "is": 8.0, "precision": 0.7, "recall": 0.4,
                                                          "modes": 10, "fid_floor": 0.35},
           "command": "gankit train wgan --dataset mnist --epochs 3", "machine": "AMD EPYC, 2 cores, torch 2.13.0+cpu, 2 threads",
           "date": "2026-01-01"}
    new = recipes_bench.render_doc({"wgan": row}, DOC, list(RECIPES))
    old_rows, new_rows = recipes_bench.old_rows(DOC), recipes_bench.old_rows(new)
    assert set(new_rows) == set(old_rows)
    assert all(new_rows[n] == old_rows[n] for n in old_rows if n != "wgan")
    assert "| 12.50 |" in new_rows["wgan"][0] and new_rows["wgan"][1].strip() == row["command"]
    assert new[new.index(ssl_bench.BEGIN):] == DOC[DOC.index(ssl_bench.BEGIN):]  # the sections after, as they were


def test_each_row_is_named_under_one_machine_only():
    from gankit.recipes import RECIPES

    def machines(doc):  # row -> the machines the doc names it under ("Machine:" lines: the rows no other names)
        lines = [line for line in doc.split("\n## ")[0].splitlines() if line.startswith("Machine")]
        named = {}
        for line in lines:
            if line.startswith("Machine of "):
                names, m = line.removeprefix("Machine of ").split(": ", 1)
                for n in names.replace("`", "").split(", "):
                    named.setdefault(n, []).append(m)
        general = [line.removeprefix("Machine: ") for line in lines if line.startswith("Machine: ")]
        return {n: named.get(n, general) for n in recipes_bench.old_rows(doc)}

    old = machines(DOC)
    assert all(len(m) == 1 for m in old.values())
    for machine in ("a machine no row ran on", old["wgan"][0].removesuffix("."), old["tlx-mlp"][0].removesuffix(".")):
        row = {"recipe": "wgan", "sets": ["image_size=32"], "dataset": "mnist", "epochs": 50, "steps": 9350,
               "wall_s": 4000.0, "train_s": 3900.0, "images_per_s": 750.0, "final": {},
               "metrics": {"fid": 40.0, "is": 7.0, "precision": 0.5, "recall": 0.1, "modes": 10, "fid_floor": 0.35},
               "command": "gankit train wgan --dataset mnist --epochs 50 --set image_size=32",
               "machine": machine, "date": "2026-01-01"}
        doc = recipes_bench.render_doc({"wgan": row}, DOC, list(RECIPES))
        new = machines(doc)
        assert new["wgan"] == [machine + "."]
        assert recipes_bench.render_doc({}, doc, list(RECIPES)) == doc  # kept as written once the json is gone
        assert {n: m for n, m in new.items() if n != "wgan"} == {n: m for n, m in old.items() if n != "wgan"}


def test_a_row_trained_with_set_overrides_names_them_in_its_recipe_cell_and_command():
    from gankit.recipes import RECIPES

    row = {"recipe": "dcgan64", "sets": ["image_size=32"], "dataset": "mnist", "epochs": 5, "steps": 2340,
           "wall_s": 900.0, "train_s": 850.0, "images_per_s": 210.0, "final": {},
           "metrics": {"fid": 9.5, "is": 8.0, "precision": 0.7, "recall": 0.5, "modes": 10, "fid_floor": 0.35},
           "command": "gankit train dcgan64 --dataset mnist --epochs 5 --set image_size=32",
           "machine": "a test machine", "date": "2026-01-01"}
    new = recipes_bench.render_doc({"dcgan64": row}, DOC, list(RECIPES))
    line, command = recipes_bench.old_rows(new)["dcgan64"]
    assert line.startswith("| `dcgan64` (image_size=32) | 5 | 2340 |") and command.strip() == row["command"]
    assert recipes_bench.render_doc({}, new, list(RECIPES)) == new  # kept as written once the json is gone


def test_an_inception_fid_fills_its_cell_and_the_floor_and_a_later_row_keeps_that_floor():
    from gankit.recipes import RECIPES

    metrics = {"fid": 7.5, "fid_inception": 21.25, "is": 8.4, "precision": 0.8, "recall": 0.7, "modes": 10,
               "fid_floor": 0.35, "fid_inception_floor": 1.55, "is_floor": 9.82}
    row = {"recipe": "cs231n-dcgan", "dataset": "mnist", "epochs": 5, "steps": 2340, "wall_s": 400.0, "train_s": 300.0,
           "images_per_s": 2000.0, "final": {}, "metrics": metrics,
           "command": "gankit train cs231n-dcgan --dataset mnist --epochs 5", "machine": "a test machine",
           "date": "2026-01-01"}
    new = recipes_bench.render_doc({"cs231n-dcgan": row}, DOC, list(RECIPES))
    cells = [c.strip() for c in recipes_bench.old_rows(new)["cs231n-dcgan"][0].split("|")]
    assert cells[recipes_bench.COLUMNS.index("Inception FID") + 1] == "21.25"
    floor = next(line for line in new.splitlines() if line.startswith("| real vs real"))
    assert "| 0.35 | 1.55 | 9.82 |" in floor
    other = {**row, "recipe": "wgan", "metrics": {k: v for k, v in metrics.items() if "inception" not in k}}
    newer = recipes_bench.render_doc({"wgan": other}, new, list(RECIPES))
    assert next(line for line in newer.splitlines() if line.startswith("| real vs real")) == floor
    assert recipes_bench.old_rows(newer)["cs231n-dcgan"] == recipes_bench.old_rows(new)["cs231n-dcgan"]


def test_a_row_of_the_older_layout_gets_an_empty_inception_cell():
    old = "| `wgan` | 1 | 187 | 185 s | 210 s | 324 | 115.98 | 1.99 | 0.38 | 0.00 | 7 | ![wgan](grids/wgan.png) |"
    cells = [c.strip() for c in recipes_bench.widen(old).split("|")[1:-1]]
    assert len(cells) == len(recipes_bench.COLUMNS) and cells[6:9] == ["115.98", "", "1.99"]
    assert recipes_bench.widen(recipes_bench.widen(old)) == recipes_bench.widen(old)


@pytest.mark.parametrize("script", ["recipes.py", "ssl_mnist.py"])
def test_a_bad_set_stops_the_benchmark_before_any_run_with_the_item_named(script):
    import subprocess  # gankit.config.parse_sets checks the key and value (its own test: tests/test_cli.py)

    p = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--set", "imagesize=32"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 1
    assert "--set imagesize=...: unknown config field" in p.stderr
    assert "$ " not in p.stdout  # no gankit train was started


def test_confusion_of_a_missing_run_is_one_line_naming_it(tmp_path):
    import subprocess

    p = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "ssl_mnist.py"), "--confusion", str(tmp_path / "nope")],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 1
    assert p.stderr.strip() == f"--confusion: {tmp_path / 'nope'}: no such run folder or checkpoint file"


def test_epochs_are_passed_and_shown_whole_or_exact():
    from common import epochs_arg

    assert [epochs_arg(e) for e in (5.0, 20, 0.5, 1 / 3)] == ["5", "20", "0.5", repr(1 / 3)]
    assert float(epochs_arg(1 / 3)) == 1 / 3  # the run trains the budget asked for


def test_ssl_benchmark_with_nothing_to_run_says_so():
    import subprocess

    p = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "ssl_mnist.py"), "--epochs", "0"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 1
    assert "--epochs 0 skips improved-gan: give --ssgan-epochs too" in p.stderr


def test_ssl_benchmark_stopped_part_way_keeps_the_runs_that_finished(tmp_path, monkeypatch):
    import json

    def fake_collect(p, recipe, seed, epochs, baseline, out):
        if seed == 1:
            raise SystemExit("improved-gan seed 1 failed")
        return {"recipe": recipe, "seed": seed, "test_errors": 100 + seed}

    monkeypatch.setattr(ssl_bench, "OUT", tmp_path)
    monkeypatch.setattr(ssl_bench, "gankit_train", lambda *a, **k: None)
    monkeypatch.setattr(ssl_bench, "collect", fake_collect)
    monkeypatch.setattr(sys, "argv", ["ssl_mnist.py", "--seeds", "0,1", "--epochs", "2", "--no-baseline"])
    with pytest.raises(SystemExit, match="seed 1 failed"):
        ssl_bench.main()
    saved = json.loads((tmp_path / "ssl-cpu.json").read_text())
    assert [r["seed"] for r in saved["runs"]] == [0] and saved["command"].startswith("python")


def test_curve_draws_a_run_and_names_a_run_without_evaluations(tmp_path):
    import subprocess

    run = tmp_path / "run"
    run.mkdir()
    (run / "stats.jsonl").write_text("".join(f'{{"step": {s}, "time_s": {s / 10}}}\n' for s in (100, 200, 300)))
    (run / "metrics.jsonl").write_text('{"step": 100, "fid": 80.0}\n{"step": 300, "fid": 40.0}\n')
    script = str(ROOT / "benchmarks" / "curve.py")
    p = subprocess.run([sys.executable, script, str(run), "-o", str(tmp_path / "c.png")], capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"{run}: 2 points" in p.stdout
    (run / "metrics.jsonl").write_text("")
    p = subprocess.run([sys.executable, script, str(run), "-o", str(tmp_path / "d.png")], capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 1 and p.stderr.strip() == f"{run}: metrics.jsonl holds no evaluation; train with --eval-every"
    assert not (tmp_path / "d.png").exists()


@pytest.mark.parametrize("notes, doc", [("results-notes.md", "results.md"), ("ssl-notes.md", "results.md"),
                                        ("folder64-notes.md", "results.md"), ("gpu-results-notes.md", "results-gpu.md"),
                                        ("performance-notes.md", "performance.md"),
                                        ("gpu-notes.md", "performance-gpu.md")])
def test_each_generated_doc_carries_its_hand_written_notes_as_they_are(notes, doc):
    # the scripts write benchmarks/NOTES into the doc on their next run: an edit made to the doc
    # alone would be lost then, one made to the notes alone would not show until then
    text = (ROOT / "benchmarks" / notes).read_text().strip()
    assert text in (ROOT / "docs" / doc).read_text(), f"docs/{doc} differs from benchmarks/{notes}: edit both"


def test_techniques_rerun_for_one_row_keeps_the_others():
    """benchmarks/out/techniques.json is scratch: `techniques.py --only NAME` on a fresh checkout must not
    drop the page's other rows."""
    techniques = pytest.importorskip("techniques")
    old = (ROOT / "docs" / "techniques.md").read_text()

    def rows(text):
        return [line for line in text.splitlines() if line.startswith("| `")]
    assert techniques.render({}, old) == old and len(rows(old)) > 5
    fresh = {"recipe": "acgan", "set": [], "epochs": 1, "fid": 1.0, "fid_floor": 0.35, "is": 9.0,
             "precision": 0.5, "recall": 0.5, "train_s": 9, "machine": "M", "date": "D"}
    new = rows(techniques.render({"acgan": fresh}, old))  # acgan and acgan-5 share a label: by label and epochs
    assert len(new) == len(rows(old)) and sum(r.startswith("| `acgan` | 1 |") for r in new) == 1
    assert "| `acgan` | 1 | 1.00 (0.35) | 9.00 |" in "\n".join(new)
    assert [r for r in new if "M, D" not in r] == [r for r in rows(old) if not r.startswith("| `acgan` | 1 |")]


def test_the_32px_rows_get_a_floor_row_of_their_own():
    """Real images resized to 32 px score differently from the 28 px originals: each size its floor."""
    from gankit.recipes import RECIPES

    def row(name, sets, floor):
        return {"recipe": name, "sets": sets, "dataset": "mnist", "epochs": 5, "steps": 100, "wall_s": 10.0,
                "train_s": 9.0, "images_per_s": 100.0, "final": {}, "machine": "a test machine", "date": "2026-01-01",
                "command": f"gankit train {name} --dataset mnist --epochs 5", "metrics": {
                    "fid": 9.5, "fid_inception": 20.0, "is": 8.0, "precision": 0.7, "recall": 0.5, "modes": 10,
                    "fid_floor": floor, "fid_inception_floor": floor + 1}}
    new = recipes_bench.render_doc({"cs231n-dcgan": row("cs231n-dcgan", [], 0.35),
                                    "wgan": row("wgan", ["image_size=32"], 0.22)}, DOC, list(RECIPES))
    floors = [line for line in new.splitlines() if line.startswith("| real vs real")]
    assert [f.split("|")[1].strip() for f in floors] == ["real vs real (floor)", "real vs real at 32 px (floor)"]
    assert "| 0.35 | 1.35 |" in floors[0] and "| 0.22 | 1.22 |" in floors[1]
    assert recipes_bench.render_doc({}, new, list(RECIPES)) == new  # both kept once the json is gone
