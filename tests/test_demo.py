"""gankit demo: the static page, served over http and run in headless Chromium, draws the run's generator
with onnxruntime-web (no errors, a grid that is not blank, G's exact output for a fixed z); what it
needs and cannot get is one line."""

import functools
import http.server
import json
import os
import re
import select
import shutil
import subprocess
import sys
import tarfile
import threading
import time
import urllib.parse
from pathlib import Path

import numpy as np
import pytest
import torch
from test_report import CHROMIUM

import gankit.demo
from gankit.cli import main
from gankit.data import to_signed
from gankit.demo import ORT_BUILDS, ORT_PACKAGE, ORT_VERSION, demo, ort_files
from gankit.errors import GankitError
from gankit.export import export as real_export
from gankit.sample import load_generator, sample_noise

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
def run_of(tiny_run):
    """recipe -> a run folder trained for 2 steps on tiny fake images (conftest's tiny_run: trained once a session)."""
    return lambda name: tiny_run(name, **({"dataset": "toy:ring8", "batch_size": 64} if name == "toy" else {}))


@pytest.fixture(scope="module", autouse=True)
def export_once(tmp_path_factory):
    """gankit.demo's export of each (run, format, weights) made once a module: a later demo of the same run gets a
    copy of the file the first export wrote (what export writes is test_export's business), not a second export."""
    folder, done = tmp_path_factory.mktemp("exports"), {}

    def once(run, out, fmt="onnx", ema=True):
        key = (str(Path(run).resolve()), fmt, ema)
        if key not in done:
            done[key] = real_export(run, folder / f"{len(done)}.{fmt}", fmt, ema)
        shutil.copyfile(done[key], out)
        return Path(out)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("gankit.demo.export", once)
        yield


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


# runs Chromium with the pipes' ends as its fds 3 and 4 (exec: its pid, its exit status)
PIPE_FDS = ("import os, sys; os.dup2(int(sys.argv[1]), 3); os.dup2(int(sys.argv[2]), 4); "
            "os.execv(sys.argv[3], sys.argv[3:])")


class Browser:
    """One headless Chromium for the module's page loads (each a fresh tab), driven over --remote-debugging-pipe:
    Chromium reads the DevTools protocol's commands on fd 3 and answers on fd 4, each message ending in a NUL."""

    def __init__(self, folder):
        to_r, self.to_w = os.pipe()
        self.from_r, from_w = os.pipe()
        self.log = folder / "chromium.log"  # its stderr: every page's console lines, as --enable-logging writes them
        cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={folder / 'profile'}", "--enable-logging=stderr", "--v=0", "--remote-debugging-pipe",
               "about:blank"]
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", PIPE_FDS, str(to_r), str(from_w), *cmd],
                                         pass_fds=(to_r, from_w), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=log)
        os.close(to_r)
        os.close(from_w)
        self.buffer, self.last_id, self.events = b"", 0, []

    def send(self, method, session=None, timeout=60, **params):
        """-> Chromium's answer to one command; the events that arrive meanwhile are kept in self.events."""
        self.last_id += 1
        message = {"id": self.last_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self.to_w, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" in self.buffer:
                raw, self.buffer = self.buffer.split(b"\0", 1)
                answer = json.loads(raw)
                if answer.get("id") == self.last_id:
                    return answer
                self.events.append(answer)
            ready = select.select([self.from_r], [], [], max(0.0, deadline - time.monotonic()))[0]
            assert ready, f"{method}: no answer from chromium in {timeout} s"
            chunk = os.read(self.from_r, 1 << 20)
            assert chunk, f"chromium quit: {self.log.read_text()[-2000:]}"
            self.buffer += chunk

    def dom(self, url, timeout=60):
        """-> (the page's DOM once its script is done: its title ready, done or error; the console lines and the
        console calls or uncaught exceptions it gave meanwhile)."""
        start = self.log.stat().st_size
        target = self.send("Target.createTarget", url="about:blank")["result"]["targetId"]
        session = self.send("Target.attachToTarget", targetId=target, flatten=True)["result"]["sessionId"]
        self.send("Runtime.enable", session=session)
        self.events = []
        self.send("Page.navigate", session=session, url=url)
        deadline, dom = time.monotonic() + timeout, None
        while dom is None and time.monotonic() < deadline:
            got = self.send("Runtime.evaluate", session=session, returnByValue=True, expression=(
                "document.URL === %s && ['ready', 'done', 'error'].includes(document.title) "
                "? document.documentElement.outerHTML : null" % json.dumps(url)))
            dom = got.get("result", {}).get("result", {}).get("value")
            if dom is None:
                time.sleep(0.05)
        self.send("Target.closeTarget", targetId=target)
        with open(self.log, errors="replace") as f:
            f.seek(start)
            console = [line for line in f.read().splitlines() if ":CONSOLE" in line]
        console += [json.dumps(e["params"])[:500] for e in self.events if e.get("sessionId") == session
                    and e["method"] in ("Runtime.consoleAPICalled", "Runtime.exceptionThrown")]
        assert dom is not None, f"{url}: not done in {timeout} s"
        return dom, console

    def close(self):
        self.send("Browser.close", timeout=30)
        code = self.proc.wait(timeout=60)
        os.close(self.to_w)
        os.close(self.from_r)
        return code


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Chromium, started once for the module's page loads."""
    assert CHROMIUM, "CI must install chromium (scripts/system-packages.sh does)"
    b = Browser(tmp_path_factory.mktemp("chromium"))
    yield b
    if b.proc.poll() is None:
        assert b.close() == 0, b.log.read_text()[-2000:]


def load(browser, server, query=""):
    """The page's DOM once its script is done."""
    url = f"http://127.0.0.1:{server.server_address[1]}/index.html{query}"
    dom, console = browser.dom(url)
    errors = re.search(r'<pre id="errors">(.*?)</pre>', dom, re.S).group(1)
    assert errors == "", errors
    assert console == []
    return dom


@needs_chromium
@pytest.mark.parametrize("name, query, rows", [("cs231n-gan", "", 8), ("cgan", "", 10), ("cgan", "?class=3&t=0.5", 10)])
def test_page_draws_a_grid(name, query, rows, site_of, browser):
    run, site, server = site_of(name)
    page = (site / "index.html").read_text()
    assert not re.search(r"(src|href)=[\"']?(https?:|//)", page)  # nothing from elsewhere
    dom = load(browser, server, query)
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
@pytest.mark.parametrize("name, where, said", [
    ("cgan", "?class=99", "?class=99: expected rows or a class from 0 to 9"),
    ("cgan", "?t=abc", "?t=abc: expected a number from 0 to 1"),
    ("cs231n-gan", "?class=3", "?class=3: expected nothing: this generator draws no classes"),
    ("cs231n-gan", "file", "This page cannot run opened as a file: serve its folder over http"),
])
def test_what_the_page_cannot_do_is_said_on_it(name, where, said, site_of, browser):
    run, site, server = site_of(name)
    url = (site / "index.html").as_uri() if where == "file" else \
        f"http://127.0.0.1:{server.server_address[1]}/index.html{where}"
    dom, _ = browser.dom(url)
    assert said in re.search(r'<pre id="errors">(.*?)</pre>', dom, re.S).group(1), dom[-2000:]


@needs_chromium
@pytest.mark.parametrize("name", ["cs231n-gan", "cgan"])
def test_page_output_equals_the_generator(name, site_of, browser):
    run, site, server = site_of(name)
    G, cfg = load_generator(run, device="cpu")
    z = sample_noise(cfg, 3, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([3, 0, 9]) if cfg.conditional else None
    with torch.no_grad():
        want = to_signed(G(z, y) if cfg.conditional else G(z), cfg.real_range).numpy()
    query = "?z=" + urllib.parse.quote(json.dumps(z.flatten().tolist()))
    if cfg.conditional:
        query += "&y=" + urllib.parse.quote(json.dumps(y.tolist()))
    dom = load(browser, server, query)
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


def test_a_cache_that_cannot_be_written_is_named(run_of, tmp_path, monkeypatch):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("GANKIT_DATA", str(tmp_path / "file" / "cache"))  # under a file: no folder can be made
    site = tmp_path / "site"
    with pytest.raises(GankitError, match=r"cannot write the cache folder .*file/cache/npm \(Not a directory\): "
                                          r"set GANKIT_DATA"):
        demo(run_of("cs231n-gan"), site)
    assert not site.exists()


def test_a_run_of_points_is_refused(run_of, tmp_path):
    for name in ("ort.wasm.min.js", *ORT_BUILDS["ort.wasm.min.js"]):  # a stand-in build: never copied
        (tmp_path / name).write_text("")
    with pytest.raises(GankitError, match="a run of 2-D points; gankit demo draws images"):
        demo(run_of("toy"), tmp_path / "site", ort_dir=tmp_path)
    assert not (tmp_path / "site").exists()


def test_a_missing_ort_dir_is_named_before_any_export(run_of, tmp_path, monkeypatch):
    monkeypatch.setattr(gankit.demo, "export", lambda *a: pytest.fail("exported before checking --ort-dir"))
    with pytest.raises(GankitError, match=r"--ort-dir .*nope: no such folder$"):
        demo(run_of("cs231n-gan"), tmp_path / "site", ort_dir=tmp_path / "nope")
    assert not (tmp_path / "site").exists()


@needs_chromium
def test_console_output_would_be_caught(browser, tmp_path):
    """load's checks can fail: a page's console output and uncaught exceptions are seen (by the same Chromium)."""
    (tmp_path / "index.html").write_text('<title>x</title><pre id="errors"></pre><script>console.log("hi"); '
                                         'document.title = "ready"; undefinedFunction();</script>')
    server = serve(tmp_path)
    try:
        with pytest.raises(AssertionError):
            load(browser, server)
        _, console = browser.dom(f"http://127.0.0.1:{server.server_address[1]}/index.html")
    finally:
        server.shutdown()
        server.server_close()
    assert any('"hi"' in line for line in console) and any("undefinedFunction" in line for line in console)


def test_an_output_folder_that_cannot_be_written_is_named(run_of, ort_dir, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "ort").write_text("")  # a file where the demo's folder goes
    with pytest.raises(GankitError, match=r"-o .*site: cannot write the demo there \(File exists\)"):
        demo(run_of("cs231n-gan"), site, ort_dir=ort_dir)


def test_a_cache_folder_missing_a_file_is_fetched_again_and_replaced(ort_dir, tmp_path, monkeypatch):
    """A cache copy cut short (a file missing) is replaced whole by the next fetch, not tripped over."""
    names = ("ort.wasm.min.js", *ORT_BUILDS["ort.wasm.min.js"])
    tgz = tmp_path / "ort.tgz"
    with tarfile.open(tgz, "w:gz") as tar:  # what npm pack gives, from the build already at hand
        for name in names:
            tar.add(ort_dir / name, f"package/dist/{name}")
    monkeypatch.setattr(gankit.demo, "npm_pack", lambda *args: tgz)
    monkeypatch.setenv("GANKIT_DATA", str(tmp_path / "cache"))
    folder = tmp_path / "cache" / "npm" / f"{ORT_PACKAGE}-{ORT_VERSION}"
    folder.mkdir(parents=True)
    shutil.copyfile(ort_dir / names[0], folder / names[0])
    assert ort_files() == (folder, names[0])
    assert all((folder / n).read_bytes() == (ort_dir / n).read_bytes() for n in names)
    assert sorted(p.name for p in folder.parent.iterdir()) == [folder.name]  # no scratch left


def test_a_demo_that_fails_to_copy_leaves_the_earlier_demo_whole(run_of, ort_dir, tmp_path, monkeypatch):
    site = tmp_path / "site"
    demo(run_of("cs231n-gan"), site, ort_dir=ort_dir)
    before = {p: p.read_bytes() for p in site.rglob("*") if p.is_file()}
    other = tmp_path / "other-ort"  # another build of onnxruntime-web: its files differ from the first demo's
    shutil.copytree(ort_dir, other)
    with open(other / "ort.wasm.min.js", "a") as f:
        f.write("\n// another build\n")
    copy = shutil.copyfile

    def full_disk(src, dst, **kwargs):
        if Path(src).name == "demo.js":
            raise OSError(28, "No space left on device")
        return copy(src, dst, **kwargs)
    monkeypatch.setattr(gankit.demo.shutil, "copyfile", full_disk)
    with pytest.raises(GankitError, match=r"-o .*site: cannot write the demo there \(No space left on device\)"):
        demo(run_of("cgan"), site, ort_dir=other)
    assert {p: p.read_bytes() for p in site.rglob("*") if p.is_file()} == before  # no file of the new demo
