"""Files that are never half-written, and file digests.

Every file gankit writes goes to a temp file beside it (``.NAME.tmpPID``), is flushed to the disk
(fsync), renamed over NAME, and the folder is flushed too: a crash, a kill -9, a full disk or a
power cut leaves either the old file or the new one, never a mix. A process killed mid-write
leaves its temp file behind; `remove_stale_temps` clears those of processes that are gone.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
from pathlib import Path
from typing import Any, Callable

import torch

from gankit.errors import GankitError

TEMP = re.compile(r"^\..+\.tmp(\d+)$")  # .NAME.tmpPID: write_atomic's temp files


def temp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def write_atomic(path: str | os.PathLike, write: Callable[[Path], Any], errors: tuple[type[Exception], ...] = (OSError,),
                 after: str = "") -> None:
    """write(tmp) then fsync and rename over `path`. A failure (any of `errors`) is one line naming
    `path` (+ `after`); the previous file at `path` is kept as it was and no temp file is left."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        write(tmp)
        _fsync(tmp)
        os.replace(tmp, path)
        _fsync(path.parent)
    except errors as e:
        raise GankitError(f"{path}: cannot write ({reason(e)}){after}") from None
    finally:
        with contextlib.suppress(OSError):  # gone already, or a read-only folder where it never was
            tmp.unlink()


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_atomic(path, lambda tmp: tmp.write_text(text))


def save_atomic(obj: Any, path: str | os.PathLike) -> None:
    """torch.save, atomically. torch.save reports a full disk as a RuntimeError of its zip writer."""
    write_atomic(path, lambda tmp: torch.save(obj, tmp), (OSError, RuntimeError), "; the previous file, if any, is kept")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as e:  # some filesystems cannot fsync a folder; the file itself was flushed
        if not (path.is_dir() and e.errno in (errno.EINVAL, errno.EBADF, errno.ENOTSUP)):
            raise
    finally:
        os.close(fd)


def reason(e: Exception) -> str:
    """An OSError's or torch.save's failure in a few words."""
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    text = str(e)
    if m := re.search(r"strerror: ([^\n]+)", text):  # torch's own wording of an OSError ("open file failed with ...")
        return m[1].strip()
    if "enforce fail" in text or "No space" in text or "file write failed" in text:
        return "the write stopped part-way: no space left on device, or a file size limit"  # torch says no more
    return (text.splitlines() or [type(e).__name__])[0][:120]


def remove_stale_temps(folder: Path) -> list[str]:
    """Delete the temp files in `folder` whose writing process is gone (killed mid-write); their
    names. A temp file of a live process (another gankit writing there) is left alone."""
    removed = []
    for p in folder.iterdir() if folder.is_dir() else []:
        m = TEMP.match(p.name)
        if m and p.is_file() and not _alive(int(m.group(1))):
            p.unlink(missing_ok=True)
            removed.append(p.name)
    return sorted(removed)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # this process writes one file at a time, never across a call to this function
    return process_runs(pid)


def process_runs(pid: int) -> bool:
    """Whether process `pid` runs on this machine (someone else's included)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()
