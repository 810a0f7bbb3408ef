"""IDX files, the container of MNIST and Fashion-MNIST (http://yann.lecun.com/exdb/mnist/).

A big-endian header (magic 0x000008NN: unsigned bytes in NN dimensions, then each dimension as a
uint32) followed by the raw bytes, plain or gzipped. Every way a file can be damaged becomes a
one-line DataError that names it.
"""

import gzip
import math
import zlib

import numpy as np

from gankit.errors import DataError

IMAGES = 0x00000803  # ubyte, 3 dims: (N, H, W)
LABELS = 0x00000801  # ubyte, 1 dim: (N,)


def read_idx(path: str, magic: int) -> np.ndarray:
    """The uint8 array stored in the IDX file `path` (gzipped if it ends in .gz)."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror}") from None
    if path.endswith(".gz"):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
            raise DataError(f"corrupt gzip file {path}: {e}") from None
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) >= 4 and int.from_bytes(raw[:4], "big") != magic:
        kind = "image" if magic == IMAGES else "label"
        raise DataError(f"not an IDX {kind} file {path}: magic 0x{int.from_bytes(raw[:4], 'big'):08x} "
                        f"(expected 0x{magic:08x})")
    if len(raw) < header:
        raise DataError(f"truncated IDX file {path}: {len(raw)} bytes, shorter than its {header}-byte header")
    dims = [int(d) for d in np.frombuffer(raw, ">u4", ndim, offset=4)]
    expected, found = math.prod(dims), len(raw) - header
    if found != expected:
        word = "truncated" if found < expected else "overlong"
        raise DataError(f"{word} IDX file {path}: header says {expected} bytes of data, found {found}")
    # copy: frombuffer over bytes is read-only, and torch wants to own writable memory
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims).copy()


def read_images_labels(image_path: str, label_path: str, num_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """A pair of IDX files -> images uint8 (N, 1, H, W) and labels int64 (N,), checked to agree."""
    x = read_idx(image_path, IMAGES)
    y = read_idx(label_path, LABELS)
    if len(x) != len(y):
        raise DataError(f"{image_path} has {len(x)} images but {label_path} has {len(y)} labels")
    if y.size and y.max() >= num_classes:
        raise DataError(f"bad labels in {label_path}: found {y.max()}, expected 0..{num_classes - 1}")
    return x[:, None], y.astype(np.int64)
