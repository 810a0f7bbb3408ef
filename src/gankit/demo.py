"""gankit demo: a run's generator as a static web page that draws samples in the browser, offline.

`demo(run, out)` writes one folder: index.html and demo.js (from gankit/web/), the run's G exported
by gankit.export (ONNX, images in [-1, 1]) and onnxruntime-web's WASM build, copied in at build time
so the page fetches nothing from elsewhere. Serve the folder over http (WASM is not loaded from
file://), e.g. `python -m http.server -d site`. The page draws a grid from fresh noise (the run's
prior), interpolates between two noise draws and, for a conditional run, draws a chosen class.

onnxruntime-web comes from the npm registry, pinned (version and the tarball's sha512): `npm pack`
fetches it once into $GANKIT_DATA/npm (default ~/.cache/gankit/npm), of which only the WASM backend's
files are kept; --ort-dir takes them from a folder instead (e.g. node_modules/onnxruntime-web/dist).
"""

from __future__ import annotations

import html
import json
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

from gankit.assets import cache_root
from gankit.download import npm_pack
from gankit.errors import GankitError
from gankit.export import export
from gankit.files import reason

ORT_PACKAGE = "onnxruntime-web"
ORT_VERSION = "1.30.0"
ORT_SHA512 = "q0y+JrrtukXSzsBWEMccVfqX25LRmosXHF+CaRJmg8pZClzcV7svNc4rKY3jL02Vb7QmRMDs1SigqR4CXAfKYQ=="  # npm's integrity
# onnxruntime-web's builds that run on WASM: the script and the module and binary it loads
ORT_BUILDS = {"ort.wasm.min.js": ("ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm"),
              "ort.min.js": ("ort-wasm-simd-threaded.jsep.mjs", "ort-wasm-simd-threaded.jsep.wasm")}
WEB = Path(__file__).parent / "web"  # the page's template and script
STAGING = ".gankit-demo-"  # the hidden folder in -o where a demo's files are staged
NO_NPM = "install node/npm or pass --ort-dir DIR holding ort.wasm.min.js (or ort.min.js) and the .mjs/.wasm files it loads"


def demo(run_or_checkpoint: str | os.PathLike, out: str | os.PathLike = "site", ort_dir: str | os.PathLike | None = None,
         ema: bool = True) -> Path:
    """Write the demo folder `out` (created if needed; gankit's files in it are replaced, others kept) -> out."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise GankitError(f"-o {out}: is a file; give a folder")
    if not out.parent.is_dir():
        raise GankitError(f"-o {out}: the folder {out.parent} does not exist")
    given = ort_files(ort_dir) if ort_dir is not None else None  # a wrong --ort-dir is said before the export
    with tempfile.TemporaryDirectory() as tmp:
        model = export(run_or_checkpoint, Path(tmp) / "generator.onnx", "onnx", ema)
        info = _contract(model)
        if info["output"]["kind"] != "images":
            raise GankitError(f"{run_or_checkpoint}: a run of 2-D points; gankit demo draws images")
        src, script = given or ort_files()
        files = {**{f"ort/{name}": src / name for name in (script, *ORT_BUILDS[script])},
                 "demo.js": WEB / "demo.js", "generator.onnx": model}
        try:
            (out / "ort").mkdir(parents=True, exist_ok=True)
            for stale in out.glob(f"{STAGING}*"):  # left by a demo that was killed
                shutil.rmtree(stale, ignore_errors=True)
            # copied beside their places first, then each renamed in (the page last): no file is left
            # half-written, and a copy that fails (a full disk) leaves the folder's earlier demo as it was
            with tempfile.TemporaryDirectory(dir=out, prefix=STAGING) as staging:
                staged = Path(staging)
                for i, source in enumerate(files.values()):
                    shutil.copyfile(source, staged / str(i))
                (staged / "page").write_text(page(info, script))
                for i, name in enumerate(files):
                    os.replace(staged / str(i), out / name)
                os.replace(staged / "page", out / "index.html")
        except OSError as e:
            raise GankitError(f"-o {out}: cannot write the demo there ({reason(e)})") from None
    return out


def page(info: dict, script: str) -> str:
    """index.html for the exported G's contract `info`, loading onnxruntime-web's `script`."""
    classes = f", {info['num_classes']} classes" if info["num_classes"] else ""
    about = (f"The generator of a {info['recipe']} run on {info['dataset']} after {info['step']} steps "
             f"({info['weights']}; z: {info['noise_dim']} numbers from {info['noise_distribution']}{classes}).")
    fill = {"__HEADING__": html.escape(f"gankit demo: {info['recipe']} on {info['dataset']}"),
            "__ABOUT__": html.escape(about), "__ORT_SCRIPT__": script,
            "__CONTRACT__": json.dumps(info).replace("<", "\\u003c")}  # no "</script>" inside the JSON
    text = (WEB / "index.html").read_text()
    for key, value in fill.items():
        text = text.replace(key, value)
    return text


def ort_files(ort_dir: str | os.PathLike | None = None) -> tuple[Path, str]:
    """-> (a folder holding an onnxruntime-web WASM build, its script's name): `ort_dir`, else the cache,
    filled by `npm pack` on first use."""
    if ort_dir is not None:
        folder = Path(ort_dir)
        if not folder.is_dir():
            raise GankitError(f"--ort-dir {folder}: {'not a folder' if folder.exists() else 'no such folder'}")
        for script, loads in ORT_BUILDS.items():
            if all((folder / name).is_file() for name in (script, *loads)):
                return folder, script
        raise GankitError(f"--ort-dir {folder}: holds neither " + " nor ".join(
            f"{s} with {' and '.join(loads)}" for s, loads in ORT_BUILDS.items()))
    script = "ort.wasm.min.js"
    folder = cache_root() / "npm" / f"{ORT_PACKAGE}-{ORT_VERSION}"
    if not all((folder / name).is_file() for name in (script, *ORT_BUILDS[script])):
        _fetch(folder, (script, *ORT_BUILDS[script]))
    return folder, script


def _fetch(folder: Path, names: tuple[str, ...]) -> None:
    """npm pack the pinned onnxruntime-web, check its sha512, keep `names` from its dist/ in `folder`."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        scratch = tempfile.TemporaryDirectory(dir=folder.parent)
    except OSError as e:
        raise GankitError(f"cannot write the cache folder {folder.parent} ({e.strerror}): set GANKIT_DATA to a "
                          f"writable folder, or pass --ort-dir DIR holding onnxruntime-web's WASM build") from None
    with scratch as tmp:
        tgz = npm_pack(ORT_PACKAGE, ORT_VERSION, ORT_SHA512, tmp, NO_NPM)
        kept = Path(tmp) / "kept"
        kept.mkdir()
        with tarfile.open(tgz) as tar:
            for name in names:
                (kept / name).write_bytes(tar.extractfile(f"package/dist/{name}").read())

        def complete() -> bool:
            return all((folder / name).is_file() for name in names)
        if folder.exists() and not complete():  # a copy cut short: folders only ever land whole
            shutil.rmtree(folder, ignore_errors=True)
        try:
            kept.replace(folder)  # whole or not at all; another process may have just done the same
        except OSError as e:
            if not complete():
                raise GankitError(f"cannot replace the incomplete cache folder {folder} ({reason(e)}); "
                                  f"delete it and run again") from None


def _contract(model: Path) -> dict:
    import onnx  # installed with onnxscript, which export needs

    meta = {p.key: p.value for p in onnx.load(str(model), load_external_data=False).metadata_props}
    return json.loads(meta["gankit"])
