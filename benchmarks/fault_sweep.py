"""Try gankit as a careless user and an unlucky machine would: bad flags and values, broken data,
checkpoints and run files, kill -9, full and read-only disks, two processes on one run. Every
case runs the real CLI in its own process, in a scratch folder, and is judged the same way:

  refused  exit status 2, exactly one `gankit: error:` line (notes aside), no traceback, and every
           file that was there before is byte for byte as it was (run-folder lock files aside)
  ok       exit status 0, and what the case says must hold afterwards

    python benchmarks/fault_sweep.py            # all cases, a table and a count at the end
    python benchmarks/fault_sweep.py -k seed    # the cases whose name holds "seed"

tests/test_faults.py keeps the most important of these in the suite; this is the long list.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

TOY = ["--no-progress", "--set", "log_every=10", "--set", "checkpoint_every=10"]


def gankit(*args, preexec=None, prefix=(), cwd=None, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, sys.executable, "-m", "gankit", *map(str, args)], capture_output=True, text=True,
                          preexec_fn=preexec, cwd=cwd, timeout=timeout)


def digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".gankit-lock"}


def judge_refused(p: subprocess.CompletedProcess, before: dict, after: dict, words: tuple[str, ...]) -> str | None:
    """None if `p` was a clean refusal, else what was wrong."""
    errors = [line for line in p.stderr.splitlines() if line.startswith("gankit: error: ")]
    others = [line for line in p.stderr.splitlines() if line.strip() and not line.startswith(("gankit: error: ",
                                                                                                "gankit: note: "))]
    if "Traceback" in p.stderr:
        return "traceback: " + p.stderr.strip().splitlines()[-1][:100]
    if p.returncode != 2:
        return f"exit {p.returncode}"
    if len(errors) != 1 or others:
        return f"{len(errors)} error lines, {len(others)} other lines"
    missing = [w for w in words if w not in errors[0]]
    if missing:
        return f"message lacks {missing}: {errors[0][:100]}"
    changed = sorted(k for k in before if after.get(k) != before[k])
    return f"changed or lost: {changed[:3]}" if changed else None


class Sweep:
    def __init__(self, scratch: Path):
        self.scratch, self.rows, self.n = scratch, [], 0
        base = scratch / "base"
        p = gankit("train", "toy", "--steps", 20, "--out", base / "run", *TOY)
        assert p.returncode == 0, p.stderr
        m = gankit("train", "cs231n-gan", "--steps", 2, "--out", base / "mnist", "--no-progress")
        assert m.returncode == 0, m.stderr
        self.base = base

    def folder(self) -> Path:
        """A fresh copy of the base runs (toy `run`, MNIST `mnist`) and a user's project folder."""
        self.n += 1
        d = self.scratch / f"case{self.n:03d}"
        shutil.copytree(self.base, d)
        (d / "project" / "src").mkdir(parents=True)
        (d / "project" / "main.py").write_text("print('mine')\n")
        (d / "project" / "src" / "lib.py").write_text("x = 1\n")
        (d / "project" / "config.json").write_text('{"name": "my project"}\n')
        (d / "file").write_text("a file, not a folder\n")
        return d

    def refused(self, name: str, args: list, *words: str, setup: Callable[[Path], None] | None = None,
                may_change: tuple[str, ...] = (), **kw) -> None:
        """`may_change`: files the command may legitimately rewrite before it is refused."""
        d = self.folder()
        if setup:
            setup(d)
        before = {k: v for k, v in digests(d).items() if k not in may_change}
        if "prefix" in kw:
            kw["prefix"] = [str(a).replace("{d}", str(d)) for a in kw["prefix"]]
        p = gankit(*[str(a).replace("{d}", str(d)) for a in args], **kw)
        problem = judge_refused(p, before, digests(d), tuple(w.replace("{d}", str(d)) for w in words))
        line = next((x for x in p.stderr.splitlines() if x.startswith("gankit: error: ")), p.stderr.strip()[-100:])
        self.rows.append((name, "refused", problem, line.removeprefix("gankit: error: ").replace(str(d) + "/", "")))

    def check(self, name: str, fn: Callable[[Path], tuple[bool, str]]) -> None:
        """A case judged by `fn(folder) -> (passed, what happened)`."""
        d = self.folder()
        try:
            passed, what = fn(d)
        except Exception as e:  # the case's own failure, reported as such
            passed, what = False, f"{type(e).__name__}: {e}"
        self.rows.append((name, "ok", None if passed else what, what.replace(str(d) + "/", "")))


def weights_equal(a: Path, b: Path) -> bool:
    wa = torch.load(a / "checkpoint.pt", weights_only=True)
    wb = torch.load(b / "checkpoint.pt", weights_only=True)
    return wa["step"] == wb["step"] and all(torch.equal(wa["G"][k], wb["G"][k]) for k in wa["G"])


def broken_png_folder(d: Path) -> None:
    (d / "imgs").mkdir()
    (d / "imgs" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")


def broken_idx(d: Path, kind: str) -> None:
    (d / "idx").mkdir()
    names = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    for n in names:
        (d / "idx" / n).write_bytes(b"")
    img = d / "idx" / names[0]
    if kind == "magic":
        img.write_bytes(b"\x00\x00\x09\x03" + b"\x00" * 12)
    elif kind == "truncated":
        img.write_bytes(b"\x00\x00\x08\x03" + (60000).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + b"\x00" * 100)


def evil_checkpoint(d: Path) -> None:
    code = ("import os, sys, torch\n"
            "class Evil:\n"
            "    def __reduce__(self):\n"
            "        return (os.system, ('touch ' + sys.argv[2],))\n"
            "s = torch.load(sys.argv[1], weights_only=True)\n"
            "s['G'] = {'w': Evil()}\n"
            "torch.save(s, sys.argv[1])\n")
    subprocess.run([sys.executable, "-c", code, str(d / "run" / "checkpoint.pt"), str(d / "PWNED")], check=True)


def mixed_checkpoint(d: Path, drop_g: bool = False) -> None:
    s = torch.load(d / "run" / "checkpoint.pt", weights_only=True)
    if drop_g:
        del s["G"]
    else:
        s["G"] = torch.load(d / "mnist" / "checkpoint.pt", weights_only=True)["G"]
    torch.save(s, d / "run" / "checkpoint.pt")


def file_size_limit(limit: int):
    def preexec():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return preexec


READ_ONLY = ["unshare", "-rm", "sh", "-c", 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"',
             "sh"]


def cases(s: Sweep) -> None:
    R = s.refused
    # ---- flags and values
    R("unknown recipe", ["train", "no-such-gan"], "unknown recipe")
    R("--set lr_g=fast", ["train", "toy", "--set", "lr_g=fast"], "lr_g=fast")
    R("--set unknown field", ["train", "toy", "--set", "colour=red"], "colour")
    R("--set without =", ["train", "toy", "--set", "lr_g"], "lr_g")
    R("--set loss=magic", ["train", "toy", "--set", "loss=magic"], "magic")
    R("--set n_critic=0", ["train", "toy", "--set", "n_critic=0"], "n_critic=0")
    R("--set betas_d=0.5", ["train", "toy", "--set", "betas_d=0.5", "--out", "{d}/new"], "betas_d")
    R("--set betas_d=0.5,nan", ["train", "toy", "--set", "betas_d=0.5,nan", "--out", "{d}/new"], "nan")
    R("--set lr_g=inf", ["train", "toy", "--set", "lr_g=inf", "--out", "{d}/new"], "lr_g=inf")
    R("--set lr_g=-1", ["train", "toy", "--set", "lr_g=-1", "--out", "{d}/new"], "lr_g")
    R("--set clip=-0.01", ["train", "toy", "--set", "clip=-0.01", "--out", "{d}/new"], "clip")
    R("--epochs inf", ["train", "toy", "--epochs", "inf", "--out", "{d}/new"], "epochs=inf")
    R("--epochs nan", ["train", "toy", "--epochs", "nan", "--out", "{d}/new"], "epochs")
    R("--epochs -1", ["train", "toy", "--epochs", "-1"], "epochs")
    R("--steps 0", ["train", "toy", "--steps", "0"], "steps")
    R("--steps and --epochs", ["train", "toy", "--steps", "5", "--epochs", "1"], "epochs")
    R("--seed 2**64", ["train", "toy", "--seed", str(2 ** 64), "--out", "{d}/new"], "seed=")
    R("--seed -1", ["train", "toy", "--seed", "-1", "--out", "{d}/new"], "seed")
    R("--seed abc", ["train", "toy", "--seed", "abc"], "seed")
    R("--batch-size 0", ["train", "toy", "--batch-size", "0", "--out", "{d}/new"], "--batch-size")
    R("--batch-size beyond the data", ["train", "toy", "--batch-size", "100000", "--out", "{d}/new"], "batch")
    R("--threads -1", ["train", "toy", "--threads", "-1", "--out", "{d}/new"], "threads")
    R("--device tpu", ["train", "toy", "--device", "tpu"], "tpu")
    R("--device cuda without CUDA", ["train", "toy", "--device", "cuda", "--out", "{d}/new"], "CUDA")
    R("--precision fp8", ["train", "toy", "--precision", "fp8"], "precision")
    R("--eval-every on toy data", ["train", "toy", "--eval-every", "10", "--out", "{d}/new"], "eval-every")
    R("--labels on a plain recipe", ["train", "cs231n-gan", "--labels", "10", "--out", "{d}/new"], "labels")
    R("--labels 0", ["train", "ssgan", "--labels", "0", "--out", "{d}/new"], "label")
    R("--labels beyond the data", ["train", "ssgan", "--labels", "100000", "--out", "{d}/new"], "label")
    R("--label-rate 1.5", ["train", "ssgan", "--label-rate", "1.5", "--out", "{d}/new"], "label_rate")
    # ---- data
    R("--dataset unknown", ["train", "cs231n-gan", "--dataset", "imagenet", "--out", "{d}/new"], "imagenet")
    R("--dataset folder missing", ["train", "cs231n-gan", "--dataset", "folder:/no/such/dir", "--out", "{d}/new"],
      "/no/such/dir")
    R("--dataset folder without images", ["train", "dcgan64", "--dataset", "folder:{d}/project", "--out", "{d}/new"],
      "project")
    R("--dataset folder with a broken PNG", ["train", "dcgan64", "--dataset", "folder:{d}/imgs", "--out", "{d}/new"],
      "a.png", setup=broken_png_folder)
    R("--dataset toy for a conv recipe", ["train", "cs231n-dcgan", "--dataset", "toy:ring8", "--out", "{d}/new"],
      "1x28x28")
    R("IDX file with a wrong magic", ["train", "cs231n-gan", "--data-dir", "{d}/idx", "--out", "{d}/new"],
      "train-images", setup=lambda d: broken_idx(d, "magic"))
    R("IDX file truncated", ["train", "cs231n-gan", "--data-dir", "{d}/idx", "--out", "{d}/new"],
      "train-images", setup=lambda d: broken_idx(d, "truncated"))
    # ---- run folders
    R("--out under a file", ["train", "toy", "--out", "{d}/file/new"], "{d}/file/new")
    R("--out an existing run", ["train", "toy", "--out", "{d}/run"], "run folder exists")
    R("--overwrite a user's project", ["train", "toy", "--steps", "5", "--overwrite", "--out", "{d}/project"],
      "did not write", "main.py")
    R("--overwrite a run holding a user's file", ["train", "toy", "--steps", "5", "--overwrite", "--out", "{d}/run"],
      "notes.txt", setup=lambda d: (d / "run" / "notes.txt").write_text("mine\n"))
    R("--overwrite a folder with a foreign config.json only",
      ["train", "toy", "--steps", "5", "--overwrite", "--out", "{d}/cfg"], "not a gankit run folder",
      setup=lambda d: ((d / "cfg").mkdir(), (d / "cfg" / "config.json").write_text('{"a": 1}')))
    R("--resume a missing folder", ["train", "--resume", "{d}/missing"], "no such run folder")
    R("--resume a user's project", ["train", "--resume", "{d}/project"], "no checkpoint.pt")
    R("--resume changing the recipe", ["train", "--resume", "{d}/run", "--set", "lr_g=0.1"], "lr_g")
    R("--resume already finished", ["train", "--resume", "{d}/run", "--steps", "10"], "already at step")
    R("--resume with config.json a list", ["train", "--resume", "{d}/run", "--steps", "30"], "not a readable config",
      setup=lambda d: (d / "run" / "config.json").write_text("[1, 2]"))
    R("--resume another run's checkpoint", ["train", "--resume", "{d}/run", "--steps", "30"], "refusing to mix",
      setup=lambda d: shutil.copy(d / "mnist" / "checkpoint.pt", d / "run" / "checkpoint.pt"))
    R("stats.jsonl with a broken middle line", ["train", "--resume", "{d}/run", "--steps", "30"], "line 1 is not JSON",
      setup=lambda d: (d / "run" / "stats.jsonl").write_text("garbage\n" + (d / "run" / "stats.jsonl").read_text()))
    # ---- checkpoints
    for verb, extra in (("sample", ["-o", "{d}/g.png"]), ("eval", ["--metrics", "modes"]),
                        ("resume", ["--steps", "30"])):
        args = (["train", "--resume", "{d}/run"] if verb == "resume" else [verb, "{d}/run"]) + extra
        R(f"{verb}: malicious checkpoint", args, "holds pickled code", "not loaded", setup=evil_checkpoint)
        R(f"{verb}: truncated checkpoint", args, "not a readable gankit checkpoint",
          setup=lambda d: (d / "run" / "checkpoint.pt").write_bytes((d / "run" / "checkpoint.pt").read_bytes()[:999]))
        R(f"{verb}: random bytes as checkpoint", args, "not a readable gankit checkpoint",
          setup=lambda d: (d / "run" / "checkpoint.pt").write_bytes(os.urandom(5000)))
        R(f"{verb}: a JSON file as checkpoint", args, "checkpoint",
          setup=lambda d: (d / "run" / "checkpoint.pt").write_text('{"G": 1}'))
        R(f"{verb}: G of another recipe", args, "does not fit", setup=mixed_checkpoint)
        R(f"{verb}: checkpoint without G", args, "has no G", setup=lambda d: mixed_checkpoint(d, drop_g=True))
    # ---- sample, eval, report
    R("sample -n 0", ["sample", "{d}/run", "-n", "0"], "-n")
    R("sample -o an existing folder", ["sample", "{d}/run", "-o", "{d}/project"], "is a folder")
    R("sample -o under a file", ["sample", "{d}/run", "-o", "{d}/file/g.png"], "g.png")
    R("sample of a folder without a checkpoint", ["sample", "{d}/project"], "no checkpoint.pt")
    R("eval --metrics unknown", ["eval", "{d}/mnist", "--metrics", "nope"], "nope")
    R("eval --num-samples 0", ["eval", "{d}/mnist", "--num-samples", "0"], "num")
    R("eval of toy data", ["eval", "{d}/run", "--metrics", "fid"], "evaluator")
    R("report -o into a missing folder", ["report", "{d}/run", "-o", "{d}/missing/r.html"], "does not exist")
    R("report of a user's project", ["report", "{d}/project"], "project")
    R("report with a truncated metrics.json", ["report", "{d}/run"], "metrics.json: not valid JSON",
      setup=lambda d: (d / "run" / "metrics.json").write_text('{"fid": 1'))
    # ---- disks
    R("checkpoint on a full disk (file size limit)", ["train", "--resume", "{d}/run", "--steps", "30", "--no-progress"],
      "checkpoint.pt: cannot write", "kept", preexec=file_size_limit(100_000),
      may_change=("run/config.json", "run/stats.jsonl"))  # the new budget, and steps past the kept checkpoint
    R("new run on a full disk (file size limit)", ["train", "toy", "--steps", "10", "--out", "{d}/new", "--no-progress"],
      "cannot write", preexec=file_size_limit(100_000))
    if shutil.which("unshare") and subprocess.run([*READ_ONLY, "/tmp", "true"], capture_output=True).returncode == 0:
        for verb, args in (("resume", ["train", "--resume", "{d}/run", "--steps", "30"]),
                           ("overwrite", ["train", "toy", "--overwrite", "--out", "{d}/run"]),
                           ("new run", ["train", "toy", "--out", "{d}/run/sub"]),
                           ("sample", ["sample", "{d}/run", "-o", "{d}/run/g.png"]),
                           ("eval", ["eval", "{d}/mnist", "--metrics", "modes", "--num-samples", "100"]),
                           ("report", ["report", "{d}/run"])):
            d_arg = "{d}/mnist" if verb == "eval" else "{d}/run"
            s.refused(f"read-only run folder: {verb}", args, "", prefix=[*READ_ONLY, d_arg])
    for case in extra_cases():
        s.check(*case)


def extra_cases():
    def kill_random(d: Path):
        ref, run = d / "ref", d / "k"
        gankit("train", "toy", "--steps", 300, "--out", ref, *TOY)
        proc = subprocess.Popen([sys.executable, "-m", "gankit", "train", "toy", "--steps", "300", "--out", str(run),
                                 *TOY], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while not (run / "checkpoint.pt").exists() and proc.poll() is None:
            time.sleep(0.005)
        time.sleep(random.uniform(0, 0.5))
        proc.kill()
        proc.wait()
        at = torch.load(run / "checkpoint.pt", weights_only=True)["step"]
        p = gankit("train", "--resume", run, "--no-progress")
        same = p.returncode == 0 and weights_equal(ref, run)
        return same, f"killed after step {at}; resumed to 300: {'same weights bit for bit' if same else p.stderr[-200:]}"

    def kill_mid_write(d: Path):
        code = ("import os, signal, sys, torch\nreal, n = torch.save, [0]\n"
                "def save(o, f, *a, **k):\n    n[0] += 1\n"
                "    if n[0] == 3:\n        real(o, f, *a, **k); os.truncate(f, os.path.getsize(f) // 3); "
                "os.kill(os.getpid(), 9)\n    return real(o, f, *a, **k)\n"
                "torch.save = save\nfrom gankit.cli import main\nsys.exit(main(sys.argv[1:]))\n")
        ref, run = d / "ref", d / "k"
        gankit("train", "toy", "--steps", 50, "--out", ref, *TOY)
        subprocess.run([sys.executable, "-c", code, "train", "toy", "--steps", "50", "--out", str(run), *TOY],
                       capture_output=True)
        left = [p.name for p in run.iterdir() if ".tmp" in p.name]
        p = gankit("train", "--resume", run, "--no-progress")
        after = [p.name for p in run.iterdir() if ".tmp" in p.name]
        same = p.returncode == 0 and weights_equal(ref, run) and not after
        return same, f"left {left}; resume cleaned them ({'removed' in p.stderr}) and matched: {same}"

    def two_trainers(d: Path):
        a = subprocess.Popen([sys.executable, "-m", "gankit", "train", "--resume", str(d / "run"), "--steps", "3000",
                              *TOY], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(4)
        b = gankit("train", "--resume", d / "run", "--steps", "3000", "--no-progress")
        a.wait()
        steps = [json.loads(x)["step"] for x in (d / "run" / "stats.jsonl").read_text().splitlines()]
        good = b.returncode == 2 and "another gankit process" in b.stderr and len(steps) == len(set(steps))
        return good, f"second: exit {b.returncode} '{b.stderr.strip()[-90:]}'; stats steps unique: {len(steps) == len(set(steps))}"

    def torn_line(d: Path):
        with open(d / "run" / "stats.jsonl", "a") as f:
            f.write('{"step": 30, "d_')
        p = gankit("train", "--resume", d / "run", "--steps", "30", "--no-progress")
        return p.returncode == 0 and "incomplete last line" in p.stderr, p.stderr.strip().splitlines()[-1][:120]

    def sigint(d: Path):
        proc = subprocess.Popen([sys.executable, "-m", "gankit", "train", "--resume", str(d / "run"), "--steps", "100000",
                                 *TOY], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(6)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        step = torch.load(d / "run" / "checkpoint.pt", weights_only=True)["step"]
        return proc.returncode == 2 and "checkpoint saved" in err and step > 20, f"exit {proc.returncode}, checkpoint at {step}: {err.strip()[-80:]}"

    def edited_config(d: Path):
        cfg = json.loads((d / "run" / "config.json").read_text())
        (d / "run" / "config.json").write_text(json.dumps({**cfg, "lr_g": 0.5}))
        p = gankit("train", "--resume", d / "run", "--steps", "30", "--no-progress")
        return p.returncode == 0 and "lr_g" in p.stderr and "checkpoint's config wins" in p.stderr, p.stderr.strip()[:120]

    return [("kill -9 at a random moment (1)", kill_random), ("kill -9 at a random moment (2)", kill_random),
            ("kill -9 at a random moment (3)", kill_random), ("kill -9 mid checkpoint write", kill_mid_write),
            ("two trainers on one run", two_trainers), ("torn last line in stats.jsonl", torn_line),
            ("Ctrl-C while training", sigint), ("config.json edited before resume", edited_config)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-k", default="", help="only the cases whose name holds this")
    args = ap.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="gankit-faults-"))
    print(f"# fault sweep: gankit CLI, {sys.executable}, torch {torch.__version__}, scratch {scratch}", flush=True)
    t = time.perf_counter()
    s = Sweep(scratch)
    if args.k:
        original = s.refused, s.check
        s.refused = lambda name, *a, **kw: original[0](name, *a, **kw) if args.k in name else None
        s.check = lambda name, *a, **kw: original[1](name, *a, **kw) if args.k in name else None
    cases(s)
    print("| case | expected | outcome | message |\n|---|---|---|---|")
    for name, kind, problem, line in s.rows:
        print(f"| {name} | {kind} | {'pass' if problem is None else 'FAIL: ' + problem} | {line[:140]} |")
    failed = sum(problem is not None for *_, problem, _ in s.rows)
    print(f"\n{len(s.rows) - failed} of {len(s.rows)} cases pass ({time.perf_counter() - t:.0f} s)")
    shutil.rmtree(scratch, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
