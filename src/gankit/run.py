"""The run folder is the record of a run. Every file gankit writes into one is in FILES below,
with what it holds; --overwrite replaces a folder only if it holds nothing else.

Each file is written to a temp file and renamed into place (gankit.files), so a crash never
leaves half of one; checkpoints are loaded with ``weights_only=True`` (no pickled code is ever
executed), and one process at a time holds the folder (LOCK).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import pickle
import re
import shutil
import sys
import zipfile
from pathlib import Path
from typing import Any

import torch

from gankit.config import Config
from gankit.errors import GankitError
from gankit.files import TEMP, reason, remove_stale_temps, save_atomic, write_text_atomic

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_FORMAT = 1
MANIFEST = ".gankit-run.json"
LOCK = ".gankit-lock"
RUN_FORMAT = 1
FILES = {
    "config.json": "the resolved Config (gankit train; rewritten from the checkpoint on resume)",
    "stats.jsonl": "one line of training scalars every log_every steps (the keys the objective logs)",
    "samples": "samples/step-NNNNNN.png: the fixed-noise grid every sample_every steps",
    CHECKPOINT: "the latest checkpoint: weights, optimisers, step, RNG streams and config",
    "checkpoint-best.pt": "the checkpoint with the lowest fid so far (--eval-every)",
    "metrics.jsonl": "one line of metrics per evaluation during training (--eval-every)",
    "metrics.json": "the metrics of gankit eval",
    "report.html": "the page of gankit report",
    "final.png": "the sample grid of make run",
    "tensorboard": "TensorBoard event files (--tensorboard)",
    MANIFEST: "marks the folder as gankit's: format, and the names in this list",
    LOCK: "flock'ed by the process training in the folder; holds its PID",
}
WRITTEN = set(FILES)
# what gankit writes inside its subfolders (and the temp files of atomic writes): --overwrite deletes nothing else
WRITTEN_IN = {"samples": re.compile(rf"step-\d{{6,}}\.png|{TEMP.pattern[1:-1]}"),
              "tensorboard": re.compile(r"events\.out\.tfevents\..+")}


class RunDir:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.config = self.path / "config.json"
        self.stats = self.path / "stats.jsonl"
        self.samples = self.path / "samples"
        self.checkpoint = self.path / CHECKPOINT
        self.best = self.path / "checkpoint-best.pt"  # the checkpoint with the lowest fid so far
        self.metrics = self.path / "metrics.jsonl"  # evaluations during training (--eval-every)

    def create(self, cfg: Config, overwrite: bool = False) -> None:
        """Make a fresh run folder, marked as gankit's by MANIFEST. An existing folder is replaced
        only with `overwrite`, and only if gankit made it and it holds nothing gankit did not
        write: nothing else of the user's is ever deleted."""
        if self.path.exists() and not self.path.is_dir():
            raise GankitError(f"--out {self.path}: exists and is not a folder")
        if self.path.exists() and any(p.name != LOCK for p in self.path.iterdir()):
            if not overwrite and (self.path / MANIFEST).exists() and not self.checkpoint.exists():
                raise GankitError(f"--out {self.path}: run folder exists but its run stopped before saving a "
                                  f"checkpoint, so it cannot be resumed; --overwrite to start it again, or another --out")
            if not overwrite:
                raise GankitError(f"--out {self.path}: run folder exists; use --resume {self.path} to continue "
                                  f"it, --overwrite to replace it, or another --out")
            self._check_replaceable()
            for p in self.path.iterdir():  # all but the lock this process holds
                if p.name != LOCK:
                    shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
        try:
            self.samples.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise GankitError(f"{self.samples}: cannot create ({reason(e)})") from None
        write_text_atomic(self.path / MANIFEST, json.dumps({"gankit": "run folder", "format": RUN_FORMAT,
                                                            "writes": sorted(WRITTEN)}) + "\n")
        write_text_atomic(self.config, cfg.to_json() + "\n")

    def _check_replaceable(self) -> None:
        """Refuse, touching nothing, unless this folder is a gankit run folder holding only what
        gankit writes. A folder from before MANIFEST existed counts if its config.json is a
        gankit config."""
        foreign = sorted(p.name for p in self.path.iterdir()
                         if p.name not in WRITTEN and not (p.name.startswith(".") and ".tmp" in p.name))
        for folder, names in WRITTEN_IN.items():
            inside = self.path / folder
            if inside.is_dir() and not inside.is_symlink():
                foreign += sorted(f"{folder}/{p.name}" for p in inside.iterdir()
                                  if not (p.is_file() and names.fullmatch(p.name)))
        if foreign:
            shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
            raise GankitError(f"--out {self.path}: holds files gankit did not write ({shown}); refusing to "
                              f"overwrite it (move them, or choose another --out)")
        if not self.is_gankits():
            raise GankitError(f"--out {self.path}: not a gankit run folder (no {MANIFEST} and no gankit "
                              f"config.json); refusing to overwrite")

    def is_gankits(self) -> bool:
        """Whether gankit made this folder: it holds MANIFEST, or (a run from before MANIFEST) a
        config.json that is a gankit config."""
        if (self.path / MANIFEST).is_file():
            return True
        try:
            Config.from_dict(json.loads(self.config.read_text()), origin=str(self.config), saved=True)
            return True
        except Exception:
            return False

    @contextlib.contextmanager
    def hold(self):
        """Hold the run folder for this process while it trains (made first if it is missing): a
        second gankit on the same folder is refused in one line naming the holder's PID. An flock
        is released by the OS when its process dies, so a kill -9 never leaves a stale lock."""
        if self.path.exists() and not self.path.is_dir():
            raise GankitError(f"--out {self.path}: exists and is not a folder")
        made = not self.path.exists()
        lock_made = made or not (self.path / LOCK).exists()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise GankitError(f"--out {self.path}: cannot create or write in the run folder ({e.strerror})") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                raise GankitError(f"--out {self.path}: another gankit process (PID {holder}) is training in this "
                                  f"run folder; wait for it or choose another --out") from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            yield self
        finally:
            os.close(fd)  # releases the flock
            if lock_made and not (self.path / MANIFEST).exists():  # refused before this became a run folder
                (self.path / LOCK).unlink(missing_ok=True)
                if made:
                    with contextlib.suppress(OSError):
                        self.path.rmdir()

    def sample_path(self, step: int) -> Path:
        return self.samples / f"step-{step:06d}.png"

    def append_stats(self, row: dict[str, Any]) -> None:
        self._append(self.stats, row)

    def _append(self, path: Path, row: dict[str, Any]) -> None:
        try:
            with open(path, "a") as f:
                f.write(json.dumps(row) + "\n")
        except OSError as e:
            raise GankitError(f"{path}: cannot write ({reason(e)}); the last checkpoint is kept") from None

    def read_stats(self, path: Path | None = None) -> list[dict[str, Any]]:
        """The rows of stats.jsonl (or another .jsonl of the run); [] if it does not exist yet. An
        incomplete last line (a crash mid-append, or a run still writing it) is left out."""
        return self._read_rows(path or self.stats)[0]

    def _read_rows(self, path: Path) -> tuple[list[dict[str, Any]], str | None]:
        """-> (rows, the torn last line or None)."""
        if not path.exists():
            return [], None
        text = path.read_text()
        lines = text.splitlines()
        rows = []
        for i, line in enumerate(lines, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    if i == len(lines) and not text.endswith("\n"):
                        return rows, line
                    raise GankitError(f"{path}: line {i} is not JSON") from None
        return rows, None

    def append_metrics(self, row: dict[str, Any]) -> None:
        self._append(self.metrics, row)

    def truncate_stats(self, step: int) -> list[str]:
        """Drop stats and metrics logged after `step` (on resume they are about to be redone) and an
        incomplete last line; -> a note for each incomplete line dropped."""
        notes = []
        for path in (self.stats, self.metrics):
            rows, torn = self._read_rows(path)
            if torn is not None:
                notes.append(f"{path}: dropped its incomplete last line (written when the run was stopped "
                             f"mid-write): {torn[:40]!r}")
            if path.exists():
                write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in rows if r["step"] <= step))
        return notes

    def grids(self) -> dict[int, Path]:
        """The trainer's sample grids by step, in step order (not copies a user made beside them)."""
        found = {int(m[1]): p for p in (self.samples.glob("step-*.png") if self.samples.is_dir() else [])
                 if (m := re.fullmatch(r"step-(\d+)\.png", p.name))}
        return dict(sorted(found.items()))  # by step: past 999,999 the names outgrow their 6 digits

    def remove_samples_after(self, step: int) -> int:
        """Delete the sample grids drawn after `step` (on resume the steps after it are redone, and a
        changed sample_every would leave them in the report's timeline); -> how many."""
        late = [p for at, p in self.grids().items() if at > step]
        for p in late:
            p.unlink(missing_ok=True)
        return len(late)

    def remove_best_after(self, step: int) -> int | None:
        """Delete checkpoint-best.pt where it was saved after `step` (by a run killed past its last
        checkpoint: on resume those steps are redone, and the metrics that chose it are cut back);
        -> the step it was of, or None where it is kept (absent, unreadable, or of an earlier step)."""
        try:
            at = torch.load(self.best, map_location="cpu", weights_only=True, mmap=True)["step"]
        except Exception:  # absent, or not a checkpoint: not this method's to judge
            return None
        if not isinstance(at, int) or at <= step:
            return None
        self.best.unlink(missing_ok=True)
        return at

    def remove_stale_temps(self) -> list[str]:
        """Delete temp files left in the folder by a process killed mid-write; their names."""
        return remove_stale_temps(self.path) + [f"samples/{n}" for n in remove_stale_temps(self.samples)]

    def save_checkpoint(self, state: dict[str, Any], best: bool = False) -> None:
        save_atomic(state, self.best if best else self.checkpoint)


def check_output(out: Path, source: str | os.PathLike, allowed: str = "") -> None:
    """Refuse an -o that would replace a run's own record: one of the files a run folder keeps
    (FILES; but `allowed`, e.g. report.html for gankit report) or the checkpoint file `source` named."""
    src = Path(source)
    if src.is_file() and out.resolve() == src.resolve() or \
            out.name in WRITTEN - {allowed} and RunDir(out.parent).is_gankits():
        what = FILES.get(out.name, "the checkpoint read")
        raise GankitError(f"-o {out}: would replace the run's own {out.name} ({what}); nothing written: give "
                          f"another file name")


def find_checkpoint(run_or_checkpoint: str | os.PathLike) -> Path:
    """A run folder or a checkpoint file -> the checkpoint file, with a clear error if absent."""
    p = Path(run_or_checkpoint)
    if p.is_dir():
        p = p / CHECKPOINT
        if not p.exists():
            raise GankitError(f"{run_or_checkpoint}: no {CHECKPOINT} in this run folder (has it saved one yet?)")
    elif not p.exists():
        raise GankitError(f"{run_or_checkpoint}: no such run folder or checkpoint file")
    return p


def load_checkpoint(run_or_checkpoint: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with weights_only=True; returns the dict with 'config' as a Config."""
    path = find_checkpoint(run_or_checkpoint)
    return _checkpoint_state(path, path, map_location)


def load_checkpoint_sha256(run_or_checkpoint: str | os.PathLike,
                           map_location: str | torch.device = "cpu") -> tuple[dict[str, Any], str]:
    """load_checkpoint, and the sha256 of the very bytes it loaded (read once, so a checkpoint
    that a running training replaces meanwhile cannot be named by the other file's hash)."""
    path = find_checkpoint(run_or_checkpoint)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise GankitError(f"{path}: cannot read the checkpoint ({reason(e)})") from None
    return _checkpoint_state(path, io.BytesIO(data), map_location), hashlib.sha256(data).hexdigest()


def _checkpoint_state(path: Path, source: Path | io.BytesIO, map_location: str | torch.device) -> dict[str, Any]:
    """The checkpoint dict torch.load reads from `source` (the file at `path`, or its bytes), checked,
    with 'config' as a Config; one line naming `path` where it is not a gankit checkpoint."""
    if _is_torchscript(source):  # before torch.load, which would warn in two lines and then refuse it
        raise GankitError(f"{path}: a TorchScript file (as gankit export writes), not a checkpoint; give the run "
                          f"folder or its checkpoint.pt (a TorchScript generator loads with "
                          f"gankit.export.load_torchscript)")
    try:
        state = torch.load(source, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        culprit = re.search(r"GLOBAL ([\w.]+)", str(e))  # what weights_only refused to import and call
        if culprit is None:
            raise GankitError(f"{path}: not a readable gankit checkpoint (damaged, or not a torch.save file)") from None
        raise GankitError(f"{path}: holds pickled code or objects ({culprit.group(1)}), not just weights; it was not "
                          f"loaded (gankit never runs code from a checkpoint)") from None
    except Exception as e:  # corrupt zip, truncated file...
        raise GankitError(f"{path}: not a readable gankit checkpoint ({first_line(e)})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT or "config" not in state:
        raise GankitError(f"{path}: not a gankit checkpoint (format {CHECKPOINT_FORMAT} expected)")
    if isinstance(state["config"], dict):  # older checkpoints kept world_size in their config
        state.setdefault("world_size", state["config"].get("world_size", 1))
    state["config"] = Config.from_dict(state["config"], origin=str(path), saved=True)
    return state


def _is_torchscript(source: Path | io.BytesIO) -> bool:
    """Whether `source` is a TorchScript archive: a zip holding code/ and constants.pkl, which a
    torch.save checkpoint does not."""
    try:
        with zipfile.ZipFile(source) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return False
    finally:
        if isinstance(source, io.BytesIO):
            source.seek(0)
    return any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names)


def first_line(e: Exception) -> str:
    """An exception as one short line: its type and the first line of its message."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return f"{type(e).__name__}: {lines[0][:160]}" if lines else type(e).__name__


def load_into(obj: Any, state: dict[str, Any], key: str, origin: str | os.PathLike) -> None:
    """obj.load_state_dict(state[key]) for a network or optimiser, with one line naming the checkpoint
    where the entry is missing or does not fit (weights of another recipe or size, say)."""
    recipe = getattr(state.get("config"), "recipe", "?")
    if key not in state:
        raise GankitError(f"{origin}: the checkpoint has no {key}; not a complete gankit checkpoint")
    try:
        obj.load_state_dict(state[key])
    except (RuntimeError, ValueError, KeyError, TypeError) as e:
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        detail = next((line for line in lines if "size mismatch" in line or "Missing" in line or "Unexpected" in line),
                      lines[0] if lines else type(e).__name__)
        raise GankitError(f"{origin}: its {key} does not fit the networks of recipe {recipe} "
                          f"({detail[:160]})") from None


def check_folder_config(run: Path, saved: Config) -> None:
    """The run folder's config.json against the checkpoint's own config: a checkpoint of another
    recipe or dataset (dropped into the folder) is refused; any other difference (an edit of
    config.json) is named in one line, and the checkpoint's config wins."""
    path = run / "config.json" if run.is_dir() else run.parent / "config.json"
    if not path.exists():
        return
    try:
        folder = json.loads(path.read_text())
        if not isinstance(folder, dict):
            raise ValueError("not a JSON object")
    except ValueError as e:
        raise GankitError(f"{path}: not a readable config ({e}); the checkpoint holds the run's config: "
                          f"restore config.json or delete it to resume from the checkpoint") from None
    ours = saved.to_dict()
    moved = str(folder.get("dataset")).startswith("folder:") and ours["dataset"].startswith("folder:")
    for key in ("recipe",) + (() if moved else ("dataset",)):  # a folder run's images may move (--dataset folder:NEW)
        if key in folder and folder[key] != ours[key]:
            raise GankitError(f"--resume {run}: the checkpoint is a {ours['recipe']} run on {ours['dataset']} but "
                              f"{path} says {folder.get('recipe')} on {folder.get('dataset')}; refusing to mix "
                              f"two runs (is the checkpoint from another run?)")
    changed = [f"{k} ({folder[k]!r} in config.json, {ours[k]!r} in the checkpoint)"
               for k in sorted(folder) if k in ours and k != "out" and folder[k] != ours[k]]
    if changed:
        where = (f"; a resume with --dataset {folder['dataset']} trains on the folder config.json names (written by a "
                 f"resume stopped before its first checkpoint)" if moved and folder["dataset"] != ours["dataset"] else "")
        print(f"gankit: note: {path} differs from the checkpoint's config in {', '.join(changed)}; the checkpoint's "
              f"config wins and config.json is rewritten from it (change a budget with --steps/--epochs){where}",
              file=sys.stderr)
