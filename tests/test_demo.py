"""gankit demo: the static page, served over http and run in headless Chromium, draws the run's generator
with onnxruntime-web (no errors, a grid that is not blank, G's exact output for a fixed z); what it
needs and cannot get is one line."""

import functools
import http.server
import json
import os
import re
import threading
import urllib.parse

import numpy as np
import pytest
import torch
from conftest import fake_images
from test_recipes import small_config
from test_report import CHROMIUM, chromium

from gankit.cli import main
from gankit.data import load as real_load
from gankit.data import to_signed
from gankit.demo import demo, ort_files
from gankit.errors import GankitError
from gankit.sample import load_generator, sample_noise
from gankit.train import train

needs_chromium = pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"),
                                    reason="chromium not installed (apt install chromium)")


@pytest.fixture(scope="module")
def ort_dir():
    """onnxruntime-web's WASM build: the cached copy, else fetched with npm (skipped without npm, outside CI)."""
    try:
        return ort_files()[0]
    except GankitError as e:
        if os.environ.get("CI"):
            raise
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def run_of(tmp_path_factory):
    """recipe -> a run folder trained for 2 steps on tiny fake images, on first use."""
    runs = {}

    def get(name):
        if name not in runs:
            folder = tmp_path_factory.mktemp(name)
            with pytest.MonkeyPatch.context() as mp:  # the tiny_data fixture, for a module's runs
                mp.setattr("gankit.data.load", lambda spec, split="train", *a, channels=None, image_size=None, seed=0,
                           **k: real_load(spec, split, seed=seed) if spec.startswith("toy:")
                           else fake_images(256, channels or 1, image_size or 28))
                train(small_config(name, folder, checkpoint_every=2), progress=False)
            runs[name] = folder / name
        return runs[name]
    return get


@pytest.fixture(scope="module")
def site_of(run_of, ort_dir, tmp_path_factory):
    """recipe -> (its run, its demo folder written by `gankit demo --ort-dir`, served on http://127.0.0.1)."""
    sites = {}

    def get(name):
        if name not in sites:
            site = tmp_path_factory.mktemp("site") / "site"
            assert main(["demo", str(run_of(name)), "-o", str(site), "--ort-dir", str(ort_dir)]) == 0
            sites[name] = run_of(name), site, serve(site)
        return sites[name]
    yield get
    for _, _, server in sites.values():
        server.shutdown()
        server.server_close()


class Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {".wasm": "application/wasm", ".mjs": "text/javascript", ".js": "text/javascript"}

    def log_message(self, fmt, *args):  # record what the page asked for instead of printing it
        self.server.requested.append(self.path.split("?")[0])


def serve(folder):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
    server.requested = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def load(server, tmp_path, query=""):
    """The page's DOM once its script is done (virtual time waits for the fetches and the inference)."""
    url = f"http://127.0.0.1:{server.server_address[1]}/index.html{query}"
    p = chromium("--virtual-time-budget=30000", "--dump-dom", url, tmp_path=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    dom = p.stdout
    errors = re.search(r'<pre id="errors">(.*?)</pre>', dom, re.S).group(1)
    assert errors == "", errors
    assert [line for line in p.stderr.splitlines() if ":CONSOLE" in line] == []
    return dom


@needs_chromium
@pytest.mark.parametrize("name, query, rows", [("cs231n-gan", "", 8), ("cgan", "", 10), ("cgan", "?class=3&t=0.5", 10)])
def test_page_draws_a_grid(name, query, rows, site_of, tmp_path):
    assert CHROMIUM, "CI must install chromium (scripts/system-packages.sh does)"
    run, site, server = site_of(name)
    page = (site / "index.html").read_text()
    assert not re.search(r"(src|href)=[\"']?(https?:|//)", page)  # nothing from elsewhere
    dom = load(server, tmp_path, query)
    assert "<title>ready</title>" in dom
    canvas = re.search(r'<canvas id="grid" width="(\d+)" height="(\d+)" data-variance="([\d.]+)"', dom)
    assert canvas, dom[-3000:]
    assert (int(canvas[1]), int(canvas[2])) == (8 * 30 + 2, rows * 30 + 2)  # 28x28 images, 2 pixels apart
    assert float(canvas[3]) > 10  # not a blank canvas
    options = re.findall(r'<option value="(\w+)"', dom)
    assert options == (["rows", *map(str, range(10))] if name == "cgan" else ["rows"])
    files = {"/" + str(p.relative_to(site)) for p in site.rglob("*") if p.is_file()}
    assert set(server.requested) <= files | {"/"}  # every request was for the folder's own files


@needs_chromium
@pytest.mark.parametrize("name", ["cs231n-gan", "cgan"])
def test_page_output_equals_the_generator(name, site_of, tmp_path):
    run, site, server = site_of(name)
    G, cfg = load_generator(run, device="cpu")
    z = sample_noise(cfg, 3, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([3, 0, 9]) if cfg.conditional else None
    with torch.no_grad():
        want = to_signed(G(z, y) if cfg.conditional else G(z), cfg.real_range).numpy()
    query = "?z=" + urllib.parse.quote(json.dumps(z.flatten().tolist()))
    if cfg.conditional:
        query += "&y=" + urllib.parse.quote(json.dumps(y.tolist()))
    dom = load(server, tmp_path, query)
    assert "<title>done</title>" in dom
    got = np.array(json.loads(re.search(r'<pre id="out" hidden="">(.*?)</pre>', dom, re.S).group(1)), np.float32)
    assert got.shape == (want.size,)
    assert np.abs(got.reshape(want.shape) - want).max() <= 1e-4
    assert want.std() > 0.01  # a G whose images differ, so equality means something


def test_without_npm_or_a_folder_the_error_is_one_line(run_of, tmp_path, monkeypatch, capfd):
    run = run_of("cs231n-gan")
    monkeypatch.setenv("GANKIT_DATA", str(tmp_path / "cache"))  # nothing cached
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))  # no npm
    site = tmp_path / "site"
    with pytest.raises(GankitError, match=r"npm not found: install node/npm or pass --ort-dir DIR"):
        demo(run, site)
    assert not site.exists()  # nothing written
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "npm").write_text("#!/bin/sh\necho 'npm ERR! code ENOTFOUND' >&2\nexit 1\n")
    (tmp_path / "bin" / "npm").chmod(0o755)
    capfd.readouterr()
    assert main(["demo", str(run), "-o", str(site)]) == 2
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and "npm pack onnxruntime-web@1.30.0 failed (npm ERR! code ENOTFOUND): offline?" in err
    assert "--ort-dir DIR" in err and not site.exists()
    with pytest.raises(GankitError, match=r"--ort-dir .*empty: holds neither ort.wasm.min.js with "):
        (tmp_path / "empty").mkdir()
        demo(run, site, ort_dir=tmp_path / "empty")


def test_a_run_of_points_is_refused(run_of, tmp_path):
    with pytest.raises(GankitError, match="a run of 2-D points; gankit demo draws images"):
        demo(run_of("toy"), tmp_path / "site", ort_dir=tmp_path)
    assert not (tmp_path / "site").exists()
