"""Run folder -> report.html: one self-contained page that opens offline.

Built from the run folder alone (config.json, stats.jsonl, metrics.jsonl, metrics.json,
samples/*.png), so an old run can be re-reported. Sample grids are embedded as data URIs, curves
are inline SVG drawn here, and the only script is a few lines for the grid slider: no CDN, no
network, no JavaScript library. A class-conditional run also gets its latest grid (a row per
class) with the class names beside the rows, and the per-class accuracy (class_acc) beside that.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
from itertools import zip_longest
from pathlib import Path

from gankit.data import CLASSES
from gankit.errors import GankitError
from gankit.files import reason, write_text_atomic
from gankit.run import MANIFEST, RunDir, check_output

NOT_METRICS = ("num_samples", "num_real", "step", "seed", "ema", "modes_of")  # metrics.json keys that say what was scored
COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]
LABELS = {"d_x": "D(x)", "d_g_z": "D(G(z))", "w_dist": "Wasserstein estimate", "gp": "gradient penalty",
          "d_real": "mean D(x)", "d_fake": "mean D(G(z))", "d_loss": "D loss", "g_loss": "G loss"}


def _nice(v: float) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def _scored(final: dict) -> str:
    """' (seed 0) of G at step 11232 (its moving average)': what gankit eval scored, as metrics.json records it."""
    if "seed" not in final or "step" not in final:  # scored no images (a test accuracy), or from before it said
        return ""
    return (f" (seed {html.escape(str(final['seed']))}) of G at step {html.escape(str(final['step']))}"
            + (" (its moving average)" if final.get("ema") else ""))


def line_chart(title: str, x: list[float], series: dict[str, list[float]], width: int = 460, height: int = 220) -> str:
    """An inline SVG line chart with axes, ticks and a legend."""
    pts = [(xi, yi) for ys in series.values() for xi, yi in zip(x, ys) if yi is not None and math.isfinite(yi)]
    if not pts:
        return ""
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = min(p[1] for p in pts), max(p[1] for p in pts)
    if x1 == x0:
        x1 = x0 + 1
    if y1 == y0:
        y0, y1 = y0 - 1, y1 + 1
    left, right, top, bottom = 52, 10, 26, 30
    sx = lambda v: left + (v - x0) / (x1 - x0) * (width - left - right)  # noqa: E731
    sy = lambda v: height - bottom - (v - y0) / (y1 - y0) * (height - top - bottom)  # noqa: E731
    out = [f'<svg class="chart" role="img" aria-label="{html.escape(title)}" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">',
           f'<text x="{left}" y="16" font-size="13" font-weight="bold">{html.escape(title)}</text>',
           f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" stroke="#888"/>',
           f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="#888"/>']
    for i in range(5):
        yv = y0 + (y1 - y0) * i / 4
        out.append(f'<text x="{left - 4}" y="{sy(yv) + 4:.1f}" font-size="10" text-anchor="end">{yv:.3g}</text>')
        out.append(f'<line x1="{left}" y1="{sy(yv):.1f}" x2="{width - right}" y2="{sy(yv):.1f}" stroke="#eee"/>')
        xv = x0 + (x1 - x0) * i / 4
        out.append(f'<text x="{sx(xv):.1f}" y="{height - bottom + 14}" font-size="10" text-anchor="middle">{xv:.0f}</text>')
    out.append(f'<text x="{(left + width - right) / 2}" y="{height - 2}" font-size="10" text-anchor="middle">step</text>')
    for k, (name, ys) in enumerate(series.items()):
        colour = COLOURS[k % len(COLOURS)]
        path = " ".join(f"{sx(xi):.1f},{sy(yi):.1f}" for xi, yi in zip(x, ys) if yi is not None and math.isfinite(yi))
        out.append(f'<polyline class="series" fill="none" stroke="{colour}" stroke-width="1.5" points="{path}"/>')
        out.append(f'<text x="{width - right - 4}" y="{top + 12 + 13 * k}" font-size="11" text-anchor="end" '
                   f'fill="{colour}">{html.escape(LABELS.get(name, name))}</text>')
    out.append("</svg>")
    return "\n".join(out)


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def _class_names(cfg: dict) -> list[str]:
    """The names of a run's classes in label order: its dataset's (gankit.data.CLASSES), else 0..K-1."""
    names = CLASSES.get(cfg.get("dataset"), [])
    k = cfg.get("num_classes") or len(names)
    return list(names) if len(names) == k else [str(i) for i in range(k)]


def class_section(cfg: dict, frame: dict | None, final: dict) -> str:
    """A conditional run's latest grid (`frame`; a row per class, gankit.sample.grid_inputs) with the
    class names beside its rows, and beside it the per-class accuracy from metrics.json (gankit eval;
    metrics.jsonl keeps only scalars, so class_acc during training is among the curves)."""
    names = _class_names(cfg)
    if frame is None:
        grid = "<p>No class grid yet: samples/ holds no step-*.png.</p>"
    else:
        labels = "".join(f"<li>{html.escape(n)}</li>" for n in names)
        grid = (f'<figure><div class="classgrid"><ol>{labels}</ol><img alt="class grid, a row per class" '
                f'src="{frame["src"]}"></div><figcaption>step {frame["step"]}</figcaption></figure>')
    table = ""
    if "class_acc_by_class" in final:
        rows = "".join(f"<tr><td>{html.escape(name)}</td><td>{_nice(acc)}</td><td>{_nice(real)}</td></tr>"
                       for name, acc, real in zip_longest(names, final["class_acc_by_class"],
                                                          final.get("class_acc_by_class_floor", []), fillvalue=""))
        table = ("<table><caption>the share of the samples drawn for each class that the evaluator classifies as "
                 "that class</caption><tr><th>class</th><th>class_acc</th><th>real images (floor)</th></tr>"
                 f"{rows}<tr><th>all</th><th>{_nice(final.get('class_acc', ''))}</th>"
                 f"<th>{_nice(final.get('class_acc_floor', ''))}</th></tr></table>")
    return f'<section id="classes"><h2>Classes (a row per class)</h2><div class="classes">{grid}{table}</div></section>'


def build_report(run_path: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Write RUN/report.html (or `out`) from the run folder; returns its path."""
    run = RunDir(run_path)
    if not run.is_gankits():
        raise GankitError(f"{run_path}: not a gankit run folder (no {MANIFEST}, no gankit config.json); "
                          f"nothing written")
    target = Path(out) if out else run.path / "report.html"
    if not target.parent.is_dir():
        raise GankitError(f"-o {target}: the folder {target.parent} does not exist")
    check_output(target, run_path, allowed="report.html")
    cfg = _read_object(run.config)
    stats = run.read_stats()
    history = run.read_stats(run.metrics)
    final = _read_object(run.path / "metrics.json") if (run.path / "metrics.json").exists() else {}
    frames = [{"step": step, "src": _data_uri(p)} for step, p in run.grids().items()]

    charts = []
    if stats:  # whatever the run's objective logged (gankit.losses.LOGS): losses, then the rest in groups of 4
        steps = [r["step"] for r in stats]
        keys = [k for k in stats[0] if k not in ("step", "time_s", "images_per_s")]
        losses, others = [k for k in keys if k.endswith("_loss")], [k for k in keys if not k.endswith("_loss")]
        groups = [("Losses", losses)] + [("Discriminator and other terms", others[i:i + 4])
                                         for i in range(0, len(others), 4)]
        for title, group in groups:
            if group:
                charts.append(line_chart(title, steps, {k: [r.get(k) for r in stats] for k in group}))
        charts.append(line_chart("Throughput (images/s)", steps, {"images/s": [r.get("images_per_s") for r in stats]}))
    if history:
        steps = [r["step"] for r in history]
        for key in [k for k in history[0] if k not in ("step", "num_samples") and isinstance(history[0][k], (int, float))
                    and not k.endswith("_floor")]:
            charts.append(line_chart(f"{key} during training", steps, {key: [r.get(key) for r in history]}))

    progress = f", {stats[-1]['step']} steps, {stats[-1]['time_s']:.0f} s" if stats else ""
    name = run.path.resolve().name  # `gankit report .` too
    parts = [f"<h1>gankit run: {html.escape(name)}</h1>",
             f"<p>recipe <b>{html.escape(str(cfg.get('recipe')))}</b> on <b>{html.escape(str(cfg.get('dataset')))}</b>"
             f"{progress}</p>"]
    if frames:
        parts.append('<section id="samples"><h2>Samples (fixed noise)</h2>'
                     f'<input id="slider" type="range" min="0" max="{len(frames) - 1}" value="{len(frames) - 1}">'
                     f' step <span id="step">{frames[-1]["step"]}</span><br>'
                     f'<img id="grid" alt="sample grid" src="{frames[-1]["src"]}"></section>'
                     f'<script>const frames = {json.dumps(frames)};\n'
                     'const slider = document.getElementById("slider");\n'
                     'slider.addEventListener("input", () => { const f = frames[slider.value];\n'
                     '  document.getElementById("grid").src = f.src;\n'
                     '  document.getElementById("step").textContent = f.step; });</script>')
    if cfg.get("conditional"):
        parts.append(class_section(cfg, frames[-1] if frames else None, final))
    if charts:
        parts.append('<section id="curves"><h2>Training curves</h2>' + "".join(c for c in charts if c) + "</section>")
    if final:
        dataset = html.escape(str(final.get("dataset", "")))
        against = f"{final['num_real']} images of {dataset}, the ones it trained on (a folder has no test split, " \
            "so no floor)" if "num_real" in final else f"the {dataset} test split"
        rows = []
        for k, v in final.items():
            if k.endswith("_floor") or k in NOT_METRICS or not isinstance(v, (int, float)):
                continue
            floor, of = final.get(f"{k}_floor"), f" of {final[k + '_of']}" if f"{k}_of" in final else ""
            rows.append(f"<tr><td>{html.escape(k)}</td><td>{_nice(v)}{of}</td><td>{'' if floor is None else _nice(floor)}</td></tr>")
        parts.append('<section id="metrics"><h2>Final metrics</h2><table><tr><th>metric</th><th>this run</th>'
                     '<th>real vs real (floor)</th></tr>' + "".join(rows) + "</table>"
                     f"<p>{html.escape(str(final.get('num_samples', '')))} samples{_scored(final)} against {against}.</p>"
                     "</section>")
    parts.append('<section id="config"><h2>Config</h2><table>' + "".join(
        f"<tr><td>{html.escape(k)}</td><td>{html.escape(json.dumps(v))}</td></tr>" for k, v in cfg.items())
        + "</table></section>")
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>gankit report: "
            f"{html.escape(name)}</title><style>"
            "body{font-family:sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}"
            "img#grid{image-rendering:pixelated;max-width:100%;border:1px solid #ccc}"
            ".classes{display:flex;gap:2em;align-items:flex-start}.classgrid{display:flex}"
            ".classgrid ol{display:grid;grid-auto-rows:1fr;list-style:none;margin:0;padding:0 6px 0 0;"
            "font-size:12px;text-align:right;align-items:center}.classgrid img{image-rendering:pixelated}"
            "figure{margin:0}figcaption,caption{font-size:12px;color:#666;text-align:left}caption{caption-side:bottom}"
            "svg.chart{margin:4px;border:1px solid #eee}table{border-collapse:collapse}"
            "td,th{border:1px solid #ddd;padding:2px 8px;font-size:13px;text-align:left}"
            "</style></head><body>" + "\n".join(parts) + "</body></html>\n")
    write_text_atomic(target, page)
    return target


def _read_object(path: Path) -> dict:
    """A JSON object from the run folder, or one line saying what is wrong with the file."""
    try:
        value = json.loads(path.read_text())
    except FileNotFoundError:
        raise GankitError(f"{path}: missing; is {path.parent} a whole gankit run folder?") from None
    except OSError as e:
        raise GankitError(f"{path}: cannot read ({reason(e)})") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise GankitError(f"{path}: not valid JSON (truncated?); rewrite it (gankit eval RUN rewrites metrics.json)") from None
    if not isinstance(value, dict):
        raise GankitError(f"{path}: expected a JSON object, got a {type(value).__name__}")
    return value
