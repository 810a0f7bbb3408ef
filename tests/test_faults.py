"""Faults done for real, on small runs in their own processes: kill -9 (at a random moment, and
in the middle of a checkpoint write), a full disk (a file-size limit; a tiny tmpfs where this
machine allows mounts), read-only run folders, malicious checkpoints, a torn log line and bad
values on the command line. Each must end in one line on stderr and exit status 2, with no
traceback, and leave every file that was there before as it was (hashed before and after)."""

from __future__ import annotations

import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from gankit.files import reason, sha256

TOY = ["--no-progress", "--set", "log_every=10", "--set", "checkpoint_every=10"]


def gankit(*args, prefix=(), preexec=None, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, sys.executable, "-m", "gankit", *map(str, args)], capture_output=True, text=True,
                          timeout=300, preexec_fn=preexec, cwd=cwd)


def ok(p: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert p.returncode == 0, p.stderr
    return p


def refused(p: subprocess.CompletedProcess, *words: str) -> str:
    """Exit status 2 and one error line (notes aside) holding `words`, no traceback."""
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert "Traceback" not in p.stderr, p.stderr
    errors = [line for line in p.stderr.splitlines() if line.startswith("gankit: error: ")]
    assert len(errors) == 1 and len(p.stderr.strip().splitlines()) == 1 + sum(
        line.startswith("gankit: note: ") for line in p.stderr.splitlines()), p.stderr
    for w in words:
        assert w in errors[0], errors[0]
    return errors[0]


def digests(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder`, but the run folders' lock files (they hold the PID of the last holder)."""
    return {str(p.relative_to(folder)): sha256(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".gankit-lock"}


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory) -> Path:
    """A toy run of 10 steps, trained once; tests copy it."""
    run = tmp_path_factory.mktemp("toy") / "run"
    ok(gankit("train", "toy", "--steps", 10, "--out", run, *TOY))
    return run


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """A toy run of 200 steps never interrupted, for the kill -9 tests to match."""
    run = tmp_path_factory.mktemp("ref") / "run"
    ok(gankit("train", "toy", "--steps", 200, "--out", run, *TOY))
    return run


@pytest.fixture
def run(toy_run, tmp_path) -> Path:
    return Path(shutil.copytree(toy_run, tmp_path / "run"))


def weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoint.pt", weights_only=True)["G"]


def same_weights(a: Path, b: Path) -> bool:
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def temps(run: Path) -> list[str]:
    return [p.name for p in run.rglob("*") if ".tmp" in p.name]


# ------------------------------------------------------------------ kill -9

def test_kill_9_at_a_random_moment_resumes_to_the_same_weights(reference, tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "gankit", "train", "toy", "--steps", "200", "--out", str(run), *TOY],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (run / "checkpoint.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    time.sleep(random.uniform(0, 0.3))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    ok(gankit("train", "--resume", run, "--no-progress"))
    assert same_weights(reference, run)
    steps = [json.loads(line)["step"] for line in (run / "stats.jsonl").read_text().splitlines()]
    assert steps == list(range(10, 201, 10))  # no step logged twice, none missing
    assert temps(run) == []


def test_kill_9_in_the_middle_of_a_checkpoint_write(reference, tmp_path):
    """The third checkpoint write (step 30) dies half-way: checkpoint.pt stays the one of step 20,
    the half-written temp file is cleaned up on resume, and the resumed run matches one never killed."""
    run = tmp_path / "run"
    die_mid_write = (
        "import os, signal, sys, torch\n"
        "real, calls = torch.save, [0]\n"
        "def save(obj, f, *a, **k):\n"
        "    calls[0] += 1\n"
        "    if calls[0] == 3:\n"
        "        real(obj, f, *a, **k)\n"
        "        os.truncate(f, os.path.getsize(f) // 2)\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    return real(obj, f, *a, **k)\n"
        "torch.save = save\n"
        "from gankit.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n")
    p = subprocess.run([sys.executable, "-c", die_mid_write, "train", "toy", "--steps", "200", "--out", str(run), *TOY],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == -signal.SIGKILL
    assert [t.startswith(".checkpoint.pt.tmp") for t in temps(run)] == [True]
    assert torch.load(run / "checkpoint.pt", weights_only=True)["step"] == 20
    p = ok(gankit("train", "--resume", run, "--no-progress"))
    assert "removed 1 temp file(s) left by a process killed mid-write" in p.stderr
    assert temps(run) == [] and same_weights(reference, run)


# ------------------------------------------------------------------ full disks

def _file_size_limit(limit: int):
    def preexec():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return preexec


def test_a_disk_that_fills_while_checkpointing(run):
    """A file-size limit below the checkpoint's size: the checkpoint write fails part-way, as on a full disk."""
    before = digests(run)
    refused(gankit("train", "--resume", run, "--steps", 20, "--no-progress", preexec=_file_size_limit(100_000)),
            "checkpoint.pt: cannot write", "no space left on device", "the previous file, if any, is kept")
    after = digests(run)
    assert after["checkpoint.pt"] == before["checkpoint.pt"]  # (config.json now records --steps 20)
    assert all(after[k] == v for k, v in before.items() if k.startswith("samples"))
    assert temps(run) == []
    ok(gankit("train", "--resume", run, "--steps", 20, "--no-progress"))  # room again: it goes on from step 10
    assert torch.load(run / "checkpoint.pt", weights_only=True)["step"] == 20


def test_a_full_tmpfs(run, tmp_path):
    """A real full filesystem: a 2 MB tmpfs in a private mount namespace, filled to the last few KB."""
    if not shutil.which("unshare"):
        pytest.skip("no unshare on this machine")
    script = textwrap.dedent(f"""
import json, os, shutil, subprocess, sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from test_faults import digests
disk = {str(tmp_path / 'disk')!r}
run = shutil.copytree({str(run)!r}, os.path.join(disk, "run"))
fd = os.open(os.path.join(disk, "filler"), os.O_WRONLY | os.O_CREAT)
try:
    while True:
        os.write(fd, b"x" * 4096)
except OSError:  # full
    os.close(fd)
os.truncate(os.path.join(disk, "filler"), os.path.getsize(os.path.join(disk, "filler")) - 64 * 1024)
before = digests(__import__("pathlib").Path(run))
p = subprocess.run([sys.executable, "-m", "gankit", "train", "--resume", run, "--steps", "20", "--no-progress"],
                   capture_output=True, text=True)
after = digests(__import__("pathlib").Path(run))
print(json.dumps({{"rc": p.returncode, "stderr": p.stderr, "before": before, "after": after,
                  "left": sorted(n for n in os.listdir(run) if ".tmp" in n)}}))
""")
    (tmp_path / "disk").mkdir()
    p = subprocess.run(["unshare", "-rm", "sh", "-c", 'mount -t tmpfs -o size=2m tmpfs "$1" && shift && exec "$@"', "sh",
                        str(tmp_path / "disk"), sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    if p.returncode != 0 and "mount" in p.stderr:
        pytest.skip(f"cannot mount a tmpfs here: {p.stderr.strip()[:100]}")
    assert p.stdout.strip(), p.stderr
    r = json.loads(p.stdout.strip().splitlines()[-1])
    refused(subprocess.CompletedProcess([], r["rc"], "", r["stderr"]), "cannot write")
    assert r["after"]["checkpoint.pt"] == r["before"]["checkpoint.pt"] and r["left"] == []


# ------------------------------------------------------------------ read-only run folders

def read_only(folder: Path) -> list[str]:
    """A command prefix under which `folder` is read-only: chmod for a user; for root, whom chmod
    does not stop, a read-only bind mount in a private mount namespace."""
    if os.geteuid() != 0:
        for p in [folder, *folder.rglob("*")]:
            p.chmod(p.stat().st_mode & ~0o222)
        return []
    prefix = ["unshare", "-rm", "sh", "-c", 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"',
              "sh", str(folder)]
    probe = subprocess.run([*prefix, sys.executable, "-c", "import sys; open(sys.argv[1], 'w')", str(folder / ".probe")],
                           capture_output=True)
    if probe.returncode == 0 or b"Read-only" not in probe.stderr:
        (folder / ".probe").unlink(missing_ok=True)
        pytest.skip("cannot make a folder read-only for root here (no mount namespace)")
    return prefix


def test_read_only_run_folder(tmp_path):
    run = tmp_path / "run"
    ok(gankit("train", "cs231n-gan", "--steps", 2, "--out", run, "--no-progress"))
    before = digests(run)
    prefix = read_only(run)
    try:
        refused(gankit("train", "--resume", run, "--steps", 4, "--no-progress", prefix=prefix),
                "cannot create or write in the run folder")
        refused(gankit("train", "toy", "--steps", 2, "--out", run, "--overwrite", "--no-progress", prefix=prefix),
                str(run))
        refused(gankit("sample", run, "-n", 4, "-o", run / "grid.png", prefix=prefix), "grid.png: cannot write")
        refused(gankit("eval", run, "--num-samples", 100, "--metrics", "modes", prefix=prefix, cwd=tmp_path),
                    "metrics.json: cannot write")
        refused(gankit("report", run, prefix=prefix), "report.html: cannot write")
    finally:
        for q in [run, *run.rglob("*")]:
            q.chmod(q.stat().st_mode | 0o200)
    assert digests(run) == before and temps(run) == []


# ------------------------------------------------------------------ foreign and malicious files

def test_malicious_checkpoints_are_never_run(run, tmp_path):
    marker = tmp_path / "pwned"
    evil = ("import os, sys, torch\n"
            "class Evil:\n"
            "    def __reduce__(self):\n"
            "        return (os.system, ('touch ' + sys.argv[2],))\n"
            "state = torch.load(sys.argv[1], weights_only=True)\n"
            "state['G'] = {'weight': Evil()}\n"
            "torch.save(state, sys.argv[1])\n")
    subprocess.run([sys.executable, "-c", evil, str(run / "checkpoint.pt"), str(marker)], check=True)
    before = digests(run)
    for args in (["sample", run, "-o", tmp_path / "g.png"], ["train", "--resume", run, "--steps", 20, "--no-progress"],
                 ["eval", run, "--metrics", "modes"]):
        refused(gankit(*args), "checkpoint.pt: holds pickled code or objects (posix.system)",
                "it was not loaded (gankit never runs code from a checkpoint)")
    assert not marker.exists() and digests(run) == before and not (tmp_path / "g.png").exists()


def test_a_torn_last_log_line_is_dropped_on_resume(run):
    with open(run / "stats.jsonl", "a") as f:
        f.write('{"step": 20, "d_lo')  # a crash in the middle of an append
    p = ok(gankit("train", "--resume", run, "--steps", 20, "--no-progress"))
    assert "stats.jsonl: dropped its incomplete last line" in p.stderr
    steps = [json.loads(line)["step"] for line in (run / "stats.jsonl").read_text().splitlines()]
    assert steps == [10, 20]
    ok(gankit("report", run))  # the report reads it too


# ------------------------------------------------------------------ bad values on the command line

@pytest.mark.parametrize("args, words", [
    (["train", "toy", "--epochs", "inf", "--out", "{tmp}/new"], ["epochs=inf"]),
    (["train", "toy", "--seed", str(2 ** 64), "--out", "{tmp}/new"], [f"seed={2 ** 64}"]),
    (["train", "toy", "--set", "lr_g=inf", "--out", "{tmp}/new"], ["lr_g=inf"]),
    (["train", "toy", "--out", "{tmp}/run/config.json/new"], ["config.json/new"]),
    (["train", "toy", "--out", "{tmp}/run"], ["run folder exists"]),
    (["sample", "{tmp}/run", "-o", "{tmp}/run/samples"], ["is a folder"]),
    (["report", "{tmp}/run", "-o", "{tmp}/missing/r.html"], ["does not exist"]),
    (["train", "toy", "--steps", "5", "--overwrite", "--out", "{tmp}/project"], ["main.py", "did not write"]),
])
def test_bad_values_are_one_line_and_touch_nothing(args, words, run, tmp_path):
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "config.json").write_text("{}")
    (tmp_path / "project" / "main.py").write_text("print('mine')\n")
    before = digests(tmp_path)
    refused(gankit(*[a.replace("{tmp}", str(tmp_path)) for a in args]), *words)
    assert digests(tmp_path) == before and not (tmp_path / "new").exists() and not (tmp_path / "missing").exists()


def test_broken_run_files_are_one_line(run, tmp_path):
    (run / "metrics.json").write_text('{"fid": 1')  # truncated
    refused(gankit("report", run), "metrics.json: not valid JSON")
    (run / "config.json").write_text("[1, 2]")  # a config.json holding a list
    refused(gankit("train", "--resume", run, "--steps", 20, "--no-progress"), "config.json: not a readable config")
    (run / "checkpoint.pt").write_bytes((run / "checkpoint.pt").read_bytes()[:1000])  # truncated
    refused(gankit("sample", run, "-o", tmp_path / "g.png"), "checkpoint.pt: not a readable gankit checkpoint")


def test_torch_write_errors_are_told_apart():
    assert reason(RuntimeError("[enforce fail at inline_container.cc:747] . open file failed with strerror: "
                               "No such file or directory")) == "No such file or directory"  # not "no space"
    assert "no space left on device" in reason(RuntimeError("[enforce fail at inline_container.cc:672] . "
                                                            "unexpected pos 1 vs 0"))
    assert reason(OSError(13, "Permission denied")) == "Permission denied"
