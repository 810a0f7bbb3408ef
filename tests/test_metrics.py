"""The metric formulas against hand-computed values and reference implementations, and the
evaluator's input handling and load errors."""

import json
import math
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gankit import assets
from gankit.errors import GankitError
from gankit.metrics import (Evaluator, EvaluatorNet, RunningStats, class_coverage, frechet_distance,
                            inception_score, knn_radii, mean_cov, precision_recall)
from gankit.metrics.evaluator import save_weights
from gankit.metrics.fid import trace_sqrt_product_eigh


def random_cov(d, seed, n=None):
    g = np.random.default_rng(seed)
    a = g.normal(size=(d, n or 2 * d))
    return a @ a.T / a.shape[1]


# ---------------------------------------------------------------- Fréchet distance

@pytest.fixture(params=["default", "without_scipy"])
def backend(request, monkeypatch):
    if request.param == "without_scipy":
        monkeypatch.setitem(sys.modules, "scipy", None)  # `import scipy.linalg` now raises ImportError
        monkeypatch.setitem(sys.modules, "scipy.linalg", None)
    return request.param


def test_frechet_distance_diagonal_by_hand(backend):
    # Diagonal covariances commute: FID = |mu1 - mu2|^2 + sum (sqrt(a) - sqrt(b))^2
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 0.25])
    expected = (1 + 0 + 4) + ((1 - 2) ** 2 + (2 - 1) ** 2 + (3 - 0.5) ** 2)  # 5 + 8.25
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_of_a_distribution_to_itself_is_zero(backend):
    mu, s = np.arange(5.0), random_cov(5, 0)
    assert frechet_distance(mu, s, mu, s) == pytest.approx(0, abs=1e-9)


def test_frechet_distance_matches_scipy_reference():
    scipy_linalg = pytest.importorskip("scipy.linalg")
    s1, s2 = random_cov(16, 1), random_cov(16, 2)
    mu1, mu2 = np.random.default_rng(3).normal(size=(2, 16))
    # pytorch-fid / TTUR: diff.diff + tr(s1) + tr(s2) - 2 tr(sqrtm(s1 s2))
    ref = (mu1 - mu2) @ (mu1 - mu2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(scipy_linalg.sqrtm(s1 @ s2)).real
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(ref, rel=1e-10)
    assert frechet_distance(torch.tensor(mu1), torch.tensor(s1), torch.tensor(mu2), torch.tensor(s2)) == pytest.approx(ref, rel=1e-10)
    tr = np.trace(scipy_linalg.sqrtm(s1 @ s2)).real
    assert trace_sqrt_product_eigh(s1, s2) == pytest.approx(tr, rel=1e-9)
    # rank-deficient covariances (fewer samples than dimensions) still agree
    s3, s4 = random_cov(16, 4, n=5), random_cov(16, 5, n=5)
    assert trace_sqrt_product_eigh(s3, s4) == pytest.approx(np.trace(scipy_linalg.sqrtm(s3 @ s4)).real, rel=1e-6)


def test_frechet_distance_rejects_mismatched_shapes():
    with pytest.raises(GankitError, match="expected mu"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


# ---------------------------------------------------------------- running statistics

def test_running_stats_streaming_equals_one_shot():
    g = torch.Generator().manual_seed(0)
    x = 1000 + torch.randn(1000, 8, generator=g, dtype=torch.float64) @ torch.randn(8, 8, generator=g, dtype=torch.float64)
    stats = RunningStats()
    for lo, hi in [(0, 1), (1, 8), (8, 8), (8, 308), (308, 1000)]:  # uneven batches, one empty, one of a single row
        stats.update(x[lo:hi])
    mu, sigma = stats.compute()
    mu1, sigma1 = mean_cov(x)
    assert mu.dtype == sigma.dtype == torch.float64
    assert torch.allclose(mu, mu1, rtol=0, atol=1e-9) and torch.allclose(sigma, sigma1, rtol=1e-9, atol=1e-9)
    assert np.allclose(sigma1.numpy(), np.cov(x.numpy(), rowvar=False), rtol=1e-12)  # unbiased, like np.cov
    stats.reset()
    with pytest.raises(GankitError, match="at least 2"):
        stats.compute()
    stats.update(x[:2].numpy())
    with pytest.raises(GankitError, match="dimension"):
        stats.update(np.zeros((3, 5)))


# ---------------------------------------------------------------- Inception Score

def test_inception_score_of_one_class_is_one():
    probs = torch.zeros(100, 10)
    probs[:, 3] = 1
    assert inception_score(probs) == (1.0, 0.0)


def test_inception_score_of_a_balanced_perfect_classifier_is_the_class_count():
    probs = F.one_hot(torch.arange(1000) % 10, 10).float()  # each split of 100 holds 10 of every class
    mean, std = inception_score(probs)
    assert mean == pytest.approx(10.0, rel=1e-12) and std == pytest.approx(0.0, abs=1e-12)


def test_inception_score_by_hand_and_against_the_reference_formula():
    # one split: p(y) = (0.75, 0.25); KL = (log(1/0.75) + 0.5 log(0.5/0.75) + 0.5 log(0.5/0.25)) / 2
    kl = (math.log(1 / 0.75) + 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)) / 2
    assert inception_score([[1.0, 0.0], [0.5, 0.5]], num_splits=1)[0] == pytest.approx(math.exp(kl), rel=1e-12)
    # openai/improved-gan inception_score.py on random probabilities, 10 uneven splits of 1003
    p = torch.randn(1003, 10, generator=torch.Generator().manual_seed(0)).softmax(1).double().numpy()
    scores = []
    for i in range(10):
        part = p[(i * p.shape[0] // 10):((i + 1) * p.shape[0] // 10), :]
        kl = part * (np.log(part) - np.log(np.expand_dims(np.mean(part, 0), 0)))
        scores.append(np.exp(np.mean(np.sum(kl, 1))))
    mean, std = inception_score(p)
    assert mean == pytest.approx(np.mean(scores), rel=1e-12) and std == pytest.approx(np.std(scores), rel=1e-9)


def test_the_is_metric_keeps_its_splits_big_enough_to_mean_something():
    """Ten splits of one sample would score any images 1 (each is its own marginal), of two at most 2: a small sample
    count gets fewer splits of at least 100; from 1,000 on, the reference's 10."""
    from gankit.metrics import is_splits

    assert [is_splits(n) for n in (10, 199, 200, 350, 999, 1000, 50_000)] == [1, 1, 2, 3, 9, 10, 10]
    probs = F.one_hot(torch.arange(20) % 10, 10).float()  # 20 confident, balanced samples
    assert inception_score(probs, num_splits=10)[0] == pytest.approx(2.0)  # 10 splits of 2 cannot score above 2
    assert inception_score(probs, num_splits=is_splits(20))[0] == pytest.approx(10.0)


def test_inception_score_rejects_bad_input():
    with pytest.raises(GankitError, match="splits"):
        inception_score(np.full((5, 2), 0.5))
    with pytest.raises(GankitError, match="probabilities"):
        inception_score(np.ones((20, 2)))


# ---------------------------------------------------------------- precision and recall

def clusters(centers, per_cluster, seed, std=0.5):
    g = torch.Generator().manual_seed(seed)
    c = torch.as_tensor(centers, dtype=torch.float64).repeat_interleave(per_cluster, 0)
    return c + std * torch.randn(c.shape, generator=g, dtype=torch.float64)


def test_precision_recall_on_constructed_sets():
    angle = torch.arange(10) * (2 * math.pi / 10)
    centers = 10 * torch.stack([angle.cos(), angle.sin()], dim=1)  # 10 modes on a circle, 6.2 apart, std 0.5
    real = clusters(centers, 100, seed=0)
    assert precision_recall(real, real.clone()) == (1.0, 1.0)
    assert precision_recall(real, clusters(centers + 1000, 100, seed=1)) == (0.0, 0.0)  # far away
    precision, recall = precision_recall(real, clusters(centers, 100, seed=2))  # a new sample of the same
    assert precision > 0.9 and recall > 0.9
    half = clusters(centers[:5], 200, seed=3)  # as many points on half the modes: sharp but not diverse
    precision, recall = precision_recall(real, half)
    assert precision > 0.9 and recall == pytest.approx(0.5, abs=0.05)
    assert precision_recall(real, half, batch_size=7) == (precision, recall)  # blocking changes nothing


def test_knn_radii_match_brute_force():
    x = torch.randn(50, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    d = torch.cdist(x, x)
    expected = d.sort(dim=1).values[:, 3] ** 2  # column 0 is the point itself
    assert torch.allclose(knn_radii(x, k=3, batch_size=16), expected, rtol=1e-9, atol=1e-12)
    with pytest.raises(GankitError, match="more than 3 points"):
        knn_radii(x[:3])


# ---------------------------------------------------------------- class coverage

def test_class_coverage():
    labels = torch.cat([torch.arange(10).repeat(20), torch.tensor([0])])  # 201 samples, class 0 once more
    out = class_coverage(F.one_hot(labels, 10).float())
    assert out["modes"] == 10 and out["of"] == 10 and out["histogram"][0] == 21
    assert out["modes_kl"] == pytest.approx(sum(c / 201 * math.log(c / 201 * 10) for c in [21] + [20] * 9))
    one = class_coverage(F.one_hot(torch.full((100,), 7), 10).float())
    assert one["modes"] == 1 and one["modes_kl"] == pytest.approx(math.log(10))
    rare = class_coverage(F.one_hot(torch.cat([torch.zeros(199, dtype=torch.long), torch.ones(1, dtype=torch.long)]), 10))
    assert rare["modes"] == 1  # 1 of 200 = 0.5% < the 1% threshold


# ---------------------------------------------------------------- the evaluator

@pytest.fixture
def random_evaluator():
    torch.manual_seed(0)
    return Evaluator(EvaluatorNet(width=8, embed_dim=16), "mnist", batch_size=7)


def test_evaluator_shapes_batches_and_resizing(random_evaluator):
    ev = random_evaluator
    x = torch.rand(20, 1, 28, 28) * 2 - 1
    feats, logits = ev.features_and_logits(x)
    assert feats.shape == (20, 16) and logits.shape == (20, 10) and feats.dtype == torch.float32
    assert torch.allclose(ev.features(x[:5]), feats[:5], atol=1e-6)  # batching (7 at a time) does not matter
    big = torch.rand(3, 1, 64, 64) * 2 - 1  # a 64 px recipe: antialiased bilinear down to 28 px
    small = F.interpolate(big, size=(28, 28), mode="bilinear", antialias=True, align_corners=False)
    assert torch.allclose(ev.features(big), ev.features(small), atol=1e-6)
    assert torch.allclose(ev.features(big.expand(-1, 3, -1, -1)), ev.features(small), atol=1e-6)  # grey RGB


def test_evaluator_rejects_bad_images(random_evaluator):
    with pytest.raises(GankitError, match="uint8"):
        random_evaluator.features(torch.zeros(2, 1, 28, 28, dtype=torch.uint8))
    with pytest.raises(GankitError, match=r"in \[-1, 1\], got values in \[0, 255\]"):
        random_evaluator.features(torch.cat([torch.zeros(1, 1, 28, 28), torch.full((1, 1, 28, 28), 255.0)]))
    with pytest.raises(GankitError, match="expected images"):
        random_evaluator.features(torch.zeros(2, 28, 28))


def test_evaluator_load_round_trip_and_errors(tmp_path, random_evaluator):
    ev = random_evaluator
    with pytest.raises(GankitError, match=r"^no evaluator weights for mnist; train them with: "
                                          r"python benchmarks/train_evaluator\.py --dataset mnist$"):
        Evaluator.load("mnist", weights_dir=tmp_path)
    with pytest.raises(GankitError, match="no evaluator for dataset 'toy:ring8'"):
        Evaluator.load("toy:ring8", weights_dir=tmp_path)

    path, info_path = save_weights(ev.net, "mnist", tmp_path, {"seed": 0})
    loaded = Evaluator.load("mnist", "cpu", weights_dir=tmp_path)
    x = torch.rand(4, 1, 28, 28) * 2 - 1
    assert torch.equal(loaded.features(x), ev.features(x))
    assert loaded.sha256 == json.loads(info_path.read_text())["sha256"]
    assert torch.load(path, weights_only=True)["format"] == 1

    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(GankitError, match=r"corrupt evaluator weights \(sha256 .* records .*\); train them with"):
        Evaluator.load("mnist", weights_dir=tmp_path)
    info_path.unlink()
    with pytest.raises(GankitError, match="provenance file mnist.json is missing"):
        Evaluator.load("mnist", weights_dir=tmp_path)


# ---------------------------------------------------------------- TF-Inception FID (network tests only with its weights)

needs_inception = pytest.mark.skipif(assets.path("inception") is None,
                                     reason="the TF-Inception weights are not cached (python -m gankit.assets inception)")


def grid_sample_resize(x, size=299):
    """TF1 resize_bilinear as gankit computed it before (NVIDIA's affine_grid / grid_sample emulation,
    checked against fid_helper_pytorch's nv_bilinear): the reference for the matmul version."""
    b, c, h, w = x.shape
    theta = torch.eye(2, 3, dtype=x.dtype)
    theta[0, 2] += 1 / w - 1 / size
    theta[1, 2] += 1 / h - 1 / size
    grid = F.affine_grid(theta.expand(b, 2, 3), [b, c, size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


@pytest.mark.parametrize("shape", [(3, 1, 28, 28), (2, 3, 32, 48), (1, 1, 400, 350)])
def test_inception_resize_is_the_grid_sample_resize(shape):
    from gankit.metrics.fid_inception import tf_bilinear_resize
    x = (torch.rand(shape, generator=torch.Generator().manual_seed(0)) * 255).round().double()
    exact = grid_sample_resize(x)
    assert (tf_bilinear_resize(x) - exact).abs().max() < 1e-9  # the same linear map
    # In float32, grid_sample's own sample coordinates are off by up to ~1e-2 on the 0..255 scale
    # (6e-4 at 28 px); the matmuls stay within float32 rounding of the exact values.
    assert (tf_bilinear_resize(x.float()) - exact).abs().max() < 1e-4
    assert (grid_sample_resize(x.float()) - exact).abs().max() < 2e-2


def test_inception_preprocessing():
    from gankit.metrics.fid_inception import INPUT_RANGE, preprocess
    x = torch.rand(2, 1, 28, 28) * 2 - 1
    y = preprocess(x)
    assert y.shape == (2, 3, 299, 299) and y.min() >= INPUT_RANGE[0] and y.max() <= INPUT_RANGE[1]
    assert y.is_contiguous(memory_format=torch.channels_last)
    const = preprocess(torch.full((1, 1, 28, 28), 0.5))  # 0.75 * 255 = 191.25 -> 191 -> 191 / 128 - 1
    assert torch.allclose(const, torch.full_like(const, 191 / 128 - 1), atol=1e-6)
    x255 = ((x + 1) * 127.5).round()
    lo, hi = INPUT_RANGE
    before = (grid_sample_resize(x255) / 255 * (hi - lo) + lo).clamp(lo, hi)  # the previous pipeline
    assert (y - before).abs().max() < 1e-5


@needs_inception
def test_inception_port_matches_the_torchscript_network():
    from gankit.metrics.fid_inception import inception_features, load_torchscript, preprocess
    x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.inference_mode():
        shipped = load_torchscript()(preprocess(x).contiguous())  # the network as shipped, NCHW
    # float32 on every CPU: "auto" would pick bf16 where it is native (AVX512_BF16, AMX), and bf16's
    # rounding (up to 1.7% of the largest feature, measured) is not what this compares
    f = inception_features(x, batch_size=2, progress=False, precision="fp32")
    assert f.shape == (3, 2048) and f.dtype == torch.float32
    assert (f - shipped).abs().max() < 1e-4 * shipped.abs().max()  # BatchNorm folded: float rounding only
    assert not torch.allclose(f[0], f[1])
    f3 = inception_features(x[:1].expand(-1, 3, -1, -1), progress=False, precision="fp32")
    assert torch.allclose(f[:1], f3, atol=1e-5)  # grey is repeated to 3 channels


def test_loading_the_evaluator_draws_no_random_numbers():
    # a training run scores itself with it (--eval-every); building it must not move the run's RNG
    from gankit.metrics.evaluator import Evaluator
    before = torch.get_rng_state()
    Evaluator.load("mnist")
    assert torch.equal(torch.get_rng_state(), before)


@needs_inception
def test_loading_the_inception_network_draws_no_random_numbers():
    from gankit.metrics.fid_inception import _port, load_torchscript
    load_torchscript()
    before = torch.get_rng_state()
    _port(load_torchscript().net.layers)  # load_inception without its cache
    assert torch.equal(torch.get_rng_state(), before)


def fake_inception(x, device="cpu", batch_size=32, progress=True, desc=""):
    """A cheap stand-in for the network, (N, 16) features, that logs which real split it saw."""
    fake_inception.calls.append(desc)
    return x.float().flatten(1)[:, ::49]


def test_inception_real_statistics_are_cached(tmp_path, monkeypatch, capsys):
    import gankit.evaluate
    from gankit.evaluate import evaluate
    from gankit.metrics.fid_inception import inception_precision
    monkeypatch.setattr(gankit.evaluate, "inception_features", fake_inception)
    x = torch.rand(20, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1
    run = lambda: evaluate(x, "mnist", "fid_inception", num_samples=20, cache_dir=tmp_path)  # noqa: E731
    real = lambda: [c for c in fake_inception.calls if c.startswith("inception ")]  # noqa: E731

    fake_inception.calls = []
    first = run()  # miss: computed and written
    assert real() == ["inception test", "inception train"]
    [path] = tmp_path.iterdir()
    assert "inception" in path.name and f"-{inception_precision('cpu')}-n20-" in path.name  # fp32 unless bf16 is native
    assert "Inception statistics of mnist (20 test + 20 train images) -> " in capsys.readouterr().err

    fake_inception.calls = []
    assert run() == first and real() == []  # hit: one line instead of the real side's bars
    err = capsys.readouterr().err
    assert f"Inception statistics of mnist (20 test + 20 train images) from {path}" in err
    assert "inception test" not in err

    path.write_bytes(b"not a torch file")  # corrupt: a note, no traceback, recomputed and rewritten
    fake_inception.calls = []
    assert run() == first and real() == ["inception test", "inception train"]
    err = capsys.readouterr().err
    assert "ignoring the unusable cache file" in err and "Traceback" not in err
    assert torch.load(path, weights_only=True)["num_samples"] == 20

    real_images = gankit.evaluate.real_images  # other images under the same name and count: a miss

    def negated(*a, **kw):
        x = real_images(*a, **kw)
        labels = kw.get("labels", False)
        return (255 - x[0], x[1]) if labels else 255 - x

    monkeypatch.setattr(gankit.evaluate, "real_images", negated)
    fake_inception.calls = []
    other = run()
    assert real() == ["inception test", "inception train"] and other["fid_inception"] != first["fid_inception"]
    assert len(list(tmp_path.iterdir())) == 2


def test_the_metric_registry_is_complete():
    from gankit.config import Config, validate
    from gankit.metrics import METRICS

    keys = [k for m in METRICS.values() for k in m.keys]
    assert len(keys) == len(set(keys))  # no two metrics write the same key
    for m in METRICS.values():
        assert m.needs in ("evaluator", "inception", "classifier") and m.doc
        assert (m.score is not None) == (m.needs == "evaluator")
    validate(Config(out="x", eval_metrics=list(METRICS), eval_every=0), fresh=False)  # every name is a valid eval metric (as recorded)
