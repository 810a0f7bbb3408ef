"""Semi-supervised GAN: losses by hand, the labelled subset, the K+1 nets, training, resume, eval."""

import json
import math

import pytest
import torch

from gankit import cli
from gankit.errors import GankitError
from gankit.evaluate import evaluate_run
from gankit.losses import feature_matching, real_logit, ssl_entropy, ssl_generator, ssl_supervised, ssl_unsupervised
from gankit.metrics.accuracy import classifier_accuracy, confusion_matrix
from gankit.nets.ssl import ImprovedGANDiscriminator, ImprovedGANGenerator, SSGANDiscriminator, SSGANGenerator, \
    WeightNormLinear
from gankit.recipes import RECIPES
from gankit.run import load_checkpoint
from gankit.sample import load_networks
from gankit.semi import labelled_subset
from gankit.steps import update_ema
from gankit.train import resume, train


# ---------------------------------------------------------------- losses, by hand

def test_real_logit_is_log_z_minus_the_fake_logit():
    # classes (0, ln 3), fake logit 0: Z = 1 + 3 = 4, D(x) = Z / (Z + 1) = 0.8
    logits = torch.tensor([[0.0, math.log(3), 0.0]])
    assert real_logit(logits).item() == pytest.approx(math.log(4))
    assert torch.sigmoid(real_logit(logits)).item() == pytest.approx(0.8)
    # an explicit fake logit of ln 4 makes real and fake equally likely
    assert real_logit(torch.tensor([[0.0, math.log(3), math.log(4)]])).item() == pytest.approx(0.0, abs=1e-7)


def test_ssl_losses_by_hand():
    l_real = torch.tensor([[0.0, math.log(3), 0.0]])  # P(real) = 0.8
    l_fake = torch.tensor([[0.0, 0.0, math.log(8)]])  # Z = 2, fake 8: P(real) = 0.2
    assert ssl_unsupervised(l_real, l_fake).item() == pytest.approx(-math.log(0.8) - math.log(0.8))
    assert ssl_generator(l_fake).item() == pytest.approx(-math.log(0.2))
    # supervised: -log p(y | x, real) over the K real classes only; the fake logit plays no part
    assert ssl_supervised(l_real, torch.tensor([1])).item() == pytest.approx(-math.log(3 / 4))
    assert ssl_supervised(torch.tensor([[0.0, math.log(3), 99.0]]), torch.tensor([1])).item() == \
        pytest.approx(-math.log(3 / 4))
    # entropy over the K real classes: uniform over 2 -> ln 2; the fake logit plays no part
    assert ssl_entropy(torch.tensor([[1.0, 1.0, 50.0]])).item() == pytest.approx(math.log(2))
    assert ssl_entropy(torch.tensor([[0.0, math.log(3), 0.0]])).item() == \
        pytest.approx(-(0.25 * math.log(0.25) + 0.75 * math.log(0.75)))
    h_real = torch.tensor([[1.0, 2.0], [3.0, 4.0]])  # means (2, 3)
    h_fake = torch.tensor([[0.0, 0.0], [2.0, 0.0]])  # means (1, 0)
    assert feature_matching(h_real, h_fake).item() == pytest.approx((1 + 9) / 2)


# ---------------------------------------------------------------- the labelled subset

def test_labelled_subset_is_balanced_and_fixed_by_the_data_seed():
    y = torch.arange(1000) % 10
    a = labelled_subset(y, per_class=7, seed=3)
    assert len(a) == 70 and torch.equal(torch.bincount(y[a]), torch.full((10,), 7))
    assert torch.equal(a, labelled_subset(y, per_class=7, seed=3))
    assert not torch.equal(a, labelled_subset(y, per_class=7, seed=4))
    r = labelled_subset(y, rate=0.2, seed=0)
    assert len(r) == 200 and len(set(r.tolist())) == 200
    with pytest.raises(GankitError, match="class 0 has only"):
        labelled_subset(torch.zeros(5, dtype=torch.long), per_class=6)
    with pytest.raises(GankitError, match="no labels"):
        labelled_subset(torch.full((5,), -1), per_class=1)


# ---------------------------------------------------------------- networks

def test_weight_norm_data_init_normalises_the_pre_activations():
    layer = WeightNormLinear(20, 8, train_scale=False)
    x = torch.randn(500, 20) * 3 + 1
    y = layer.init_from(x)
    assert torch.allclose(y.mean(0), torch.zeros(8), atol=1e-5)
    assert torch.allclose(y.std(0), torch.ones(8), atol=1e-4)
    assert "g" not in dict(layer.named_parameters()) and "g" in layer.state_dict()  # fixed scale, still saved


def test_semi_supervised_nets_give_k_plus_one_logits():
    D = ImprovedGANDiscriminator([1, 28, 28]).eval()
    x = ImprovedGANGenerator(100, [1, 28, 28])(torch.rand(6, 100))
    assert x.shape == (6, 1, 28, 28) and x.min() >= -1 and x.max() <= 1
    logits = D(x)
    assert logits.shape == (6, 11) and torch.equal(logits[:, -1], torch.zeros(6))  # implicit fake logit
    assert D.features(x).shape == (6, 250)
    D2 = SSGANDiscriminator().eval()
    x2 = SSGANGenerator()(torch.randn(3, 100))
    assert x2.shape == (3, 1, 64, 64)
    assert D2(x2).shape == (3, 11) and D2.features(x2).shape == (3, 1024)
    assert torch.allclose(D2.head(D2.features(x2)), D2(x2))


def test_ema_warms_up_and_copies_buffers():
    D, D_ema = torch.nn.BatchNorm1d(3), torch.nn.BatchNorm1d(3)
    with torch.no_grad():
        D.weight.fill_(2.0)
        D.running_mean.fill_(5.0)
    update_ema(D_ema, D, 0.75)
    assert torch.allclose(D_ema.weight, torch.full((3,), 0.75 * 1 + 0.25 * 2))
    assert torch.equal(D_ema.running_mean, D.running_mean)


class _FirstPixelClass(torch.nn.Module):  # predicts class = first pixel value, with a huge fake logit to ignore
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x):
        k = ((x[:, 0, 0, 0] + 1) * 127.5).round().long()
        return torch.cat([torch.nn.functional.one_hot(k, 10).float(), torch.full((len(x), 1), 50.0)], 1)


def test_classifier_accuracy_counts_errors_over_the_real_classes():
    x = torch.zeros(7, 1, 2, 2, dtype=torch.uint8)
    x[:, 0, 0, 0] = torch.tensor([0, 1, 2, 3, 4, 5, 6])
    y = torch.tensor([0, 1, 2, 3, 4, 9, 9])
    assert classifier_accuracy(_FirstPixelClass(), x, y, batch_size=3) == {"test_acc": 5 / 7, "test_errors": 2}


def test_confusion_matrix_puts_true_classes_in_rows_and_d_s_classes_in_columns():
    x = torch.zeros(6, 1, 2, 2, dtype=torch.uint8)
    x[:, 0, 0, 0] = torch.tensor([9, 9, 9, 4, 0, 1])  # D's classes
    y = torch.tensor([4, 4, 9, 4, 0, 0])  # two 4s merged into 9, a 0 called 1
    cm = confusion_matrix(_FirstPixelClass(), x, y, num_classes=10, batch_size=4)
    expected = torch.zeros(10, 10, dtype=torch.int64)
    expected[4, 9], expected[9, 9], expected[4, 4], expected[0, 0], expected[0, 1] = 2, 1, 1, 1, 1
    assert torch.equal(cm, expected)
    assert int(cm.sum() - cm.trace()) == classifier_accuracy(_FirstPixelClass(), x, y)["test_errors"]
    with pytest.raises(ValueError, match="labels run from -1 to 4, outside the 10 classes"):
        confusion_matrix(_FirstPixelClass(), x, torch.tensor([4, 4, -1, 4, 0, 0]), num_classes=10)


# ---------------------------------------------------------------- training

def _cfg(tmp_path, name="improved-gan", **over):
    settings = dict(out=str(tmp_path / "run"), steps=4, batch_size=20, labels_per_class=3, log_every=1,
                    sample_every=2, checkpoint_every=2, eval_every=2, grid_size=16, init_batch=40)
    return RECIPES[name].config(**{**settings, **over})


@pytest.mark.parametrize("extra", [{}, {"lr_decay": 0.5, "ent_weight": 0.3}])
def test_semi_supervised_run_logs_test_accuracy_and_resumes_exactly(tmp_path, tiny_data, extra):
    full = train(_cfg(tmp_path, out=str(tmp_path / "full"), **extra), progress=False)
    rows = [json.loads(line) for line in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4]
    assert all(r["test_errors"] + round(r["test_acc"] * 256) == 256 for r in rows)  # the whole (tiny) test split
    stats = json.loads((tmp_path / "full" / "stats.jsonl").read_text().splitlines()[-1])
    assert {"d_loss", "d_sup", "d_unsup", "train_acc", "g_loss", "g_fm", "d_x", "d_g_z"} <= set(stats)
    assert full["labelled"] == 30
    assert ("d_ent" in stats) == bool(extra)
    if extra:  # the last step (3 of 4) ran at lr · (1 - 3/4) / 0.5
        lr = load_checkpoint(tmp_path / "full")["opt_d"]["param_groups"][0]["lr"]
        assert float(lr) == pytest.approx(_cfg(tmp_path).lr_d * 0.5)

    train(_cfg(tmp_path, out=str(tmp_path / "half"), steps=2, **extra), progress=False)
    resume(tmp_path / "half", steps=4, progress=False)
    a, b = load_checkpoint(tmp_path / "full"), load_checkpoint(tmp_path / "half")
    for part in ("G", "D", "D_ema"):
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), (part, k)


def test_data_dependent_init_runs_on_fresh_runs(tmp_path, tiny_data):
    cfg = _cfg(tmp_path, steps=1, eval_every=0, lr_d=1e-12, lr_g=1e-12, ema=0.0)
    train(cfg, progress=False)
    g = load_checkpoint(tmp_path / "run")["D"]["layers.0.g"]
    assert not torch.allclose(g, torch.ones_like(g))  # set from the data, not left at 1


def test_baseline_trains_only_the_classifier(tmp_path, tiny_data):
    torch.manual_seed(0)
    G0, _ = RECIPES["improved-gan"].nets(_cfg(tmp_path, data_shape=[1, 28, 28]))
    train(_cfg(tmp_path, baseline=True), progress=False)
    state = load_checkpoint(tmp_path / "run")
    assert all(torch.equal(v, state["G"][k]) for k, v in G0.state_dict().items())  # G never stepped
    assert not (tmp_path / "run" / "samples").exists() or not any((tmp_path / "run" / "samples").iterdir())
    stats = json.loads((tmp_path / "run" / "stats.jsonl").read_text().splitlines()[-1])
    assert "d_sup" in stats and "g_loss" not in stats and "d_unsup" not in stats
    assert set(evaluate_run(tmp_path / "run")) == {"dataset", "test_acc", "test_errors", "checkpoint", "step"}  # no G to score


def test_ssgan_trains_a_step_with_an_explicit_fake_class(tmp_path, tiny_data):
    """...and its D's batch norm keeps running statistics of real images alone, the ones its test
    accuracy normalises by: one update per D step (its real batch), none from G(z) or the G step."""
    summary = train(_cfg(tmp_path, "ssgan", steps=2, batch_size=8, label_rate=0.5, labels_per_class=0,
                         eval_every=0), progress=False)
    assert summary["labelled"] == 128 and math.isfinite(summary["final"]["g_loss"])
    D = load_checkpoint(tmp_path / "run")["D"]
    counts = {k: int(v) for k, v in D.items() if k.endswith("num_batches_tracked")}
    assert counts and set(counts.values()) == {2}, counts  # 2 steps x n_critic 1


def test_eval_run_reports_accuracy_of_the_moving_average(tmp_path, tiny_data):
    train(_cfg(tmp_path, eval_every=0), progress=False)
    result = evaluate_run(tmp_path / "run", metrics="accuracy")  # on tiny_data's test split
    D = load_networks(tmp_path / "run", "cpu")[1]  # the tested weights
    x, y = tiny_data("mnist", "test").x, tiny_data("mnist").y
    assert result["test_errors"] == classifier_accuracy(D, x, y)["test_errors"]
    state = load_checkpoint(tmp_path / "run")
    assert torch.equal(D.state_dict()["out.v"], state["D_ema"]["out.v"])
    assert not torch.equal(state["D_ema"]["out.v"], state["D"]["out.v"])


# ---------------------------------------------------------------- errors

@pytest.mark.parametrize("args, message", [
    (["train", "cs231n-gan", "--labels", "10"], "no class logits"),
    (["train", "improved-gan", "--labels", "0"], "must be positive"),
    (["train", "improved-gan", "--label-rate", "1.5"], "label_rate=1.5"),
    (["train", "cs231n-gan", "--baseline"], "baseline=true"),
    (["train", "improved-gan", "--set", "labels_per_class=0"], "set labels_per_class or label_rate"),
    (["train", "improved-gan", "--set", "labels_per_class=0", "--set", "eval_every=0"], "trains a classifier"),
    (["train", "improved-gan", "--dataset", "toy:ring8"], "labelled dataset"),
    (["train", "improved-gan", "--set", "ema=1"], "ema=1.0"),
    (["train", "cs231n-gan", "--set", "eval_metrics=accuracy", "--eval-every", "1"], "needs a semi-supervised run"),
    (["train", "cs231n-gan", "--set", "ent_weight=0.1"], "ent_weight=0.1: only a semi-supervised GAN run"),
    (["train", "improved-gan", "--baseline", "--set", "ent_weight=0.1"], "ent_weight=0.1: only"),
])
def test_bad_semi_supervised_input_is_one_clear_line(args, message, tmp_path, capsys, tiny_data):
    try:
        code = cli.main([*args, "--out", str(tmp_path / "r"), "--steps", "1", "--no-progress"])
    except SystemExit as e:  # argparse
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and message in err, err
    assert not (tmp_path / "r").exists()  # nothing written


@pytest.mark.parametrize("args", [["--labels", "10"], ["--set", "labels_per_class=10"]])
def test_a_labelled_subset_by_count_replaces_the_recipes_rate(args):
    """ssgan labels a rate (0.2) of MNIST: asking for 10 a class, by flag or by --set, drops the rate,
    and asking for a rate drops improved-gan's count."""
    from gankit.config import validate
    from gankit.recipes import get

    over = cli._overrides(cli._parser().parse_args(["train", "ssgan", *args]))
    cfg = get("ssgan").config(**over)
    assert (cfg.labels_per_class, cfg.label_rate) == (10, 0.0)
    validate(cfg, fresh=True)
    over = cli._overrides(cli._parser().parse_args(["train", "improved-gan", "--set", "label_rate=0.1"]))
    assert (get("improved-gan").config(**over).labels_per_class, over["label_rate"]) == (0, 0.1)


def test_improved_gan_learns_digits_from_100_labels(tmp_path, capsys):
    """Real MNIST, 300 steps (about 10 s): the classifier is far above chance, and `gankit eval`
    reproduces the accuracy the trainer logged."""
    run = tmp_path / "ssl"
    assert cli.main(["train", "improved-gan", "--steps", "300", "--eval-every", "300", "--out", str(run),
                     "--no-progress"]) == 0
    logged = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert logged["test_acc"] > 0.6, logged
    capsys.readouterr()
    assert cli.main(["eval", str(run), "--metrics", "accuracy"]) == 0
    printed = dict(line.split()[:2] for line in capsys.readouterr().out.splitlines() if line.startswith("test_"))
    assert int(printed["test_errors"]) == logged["test_errors"]
    assert json.loads((run / "metrics.json").read_text())["test_errors"] == logged["test_errors"]


def test_report_of_a_semi_supervised_run_charts_its_terms_and_test_errors(tmp_path, tiny_data):
    from gankit.report import build_report

    train(_cfg(tmp_path), progress=False)
    page = build_report(tmp_path / "run").read_text()
    assert all(f">{k}</text>" in page for k in ("d_sup", "d_unsup", "g_fm", "train_acc"))  # charted as logged
    assert "test_errors during training" in page


def test_adam_eps_reaches_the_optimisers_and_is_checked():
    from gankit.build import make_optimizer
    from gankit.config import validate

    cfg = RECIPES["improved-gan"].config(adam_eps=1e-4)
    assert make_optimizer(cfg, torch.nn.Linear(2, 2), 1e-3, [0.5, 0.999]).param_groups[0]["eps"] == 1e-4
    with pytest.raises(GankitError, match="adam_eps=0.0"):
        validate(RECIPES["improved-gan"].config(adam_eps=0.0))


def test_lr_decay_falls_linearly_to_zero_over_the_last_fraction():
    from gankit.build import lr_scale, make_optimizer, set_lr
    from gankit.config import validate

    assert [lr_scale(t, 12, 1 / 3) for t in (0, 8, 10, 12)] == pytest.approx([1, 1, 0.5, 0])
    assert all(lr_scale(t, 12, 0.0) == 1 for t in range(13))
    opt = make_optimizer(RECIPES["improved-gan"].config(lr_decay=0.25), torch.nn.Linear(2, 2), 1e-3, [0.5, 0.999])
    lr = opt.param_groups[0]["lr"]
    set_lr(opt, 2e-4)  # in place: a step captured in a CUDA graph reads the same tensor
    assert opt.param_groups[0]["lr"] is lr and lr.item() == pytest.approx(2e-4)
    with pytest.raises(GankitError, match="lr_decay=1.5"):
        validate(RECIPES["improved-gan"].config(lr_decay=1.5))
    with pytest.raises(GankitError, match="ent_weight=-1"):
        validate(RECIPES["improved-gan"].config(ent_weight=-1.0))


def test_resume_keeps_the_optimiser_this_run_built():
    # a checkpoint's optimiser state carries the saving run's lr object and flags (a CPU tensor after
    # map_location="cpu"); the resumed run keeps its own, which a captured step reads, at the saved value
    from gankit.build import build_settings, make_optimizer, put_back

    cfg = RECIPES["improved-gan"].config(lr_decay=0.25)
    net = torch.nn.Linear(2, 2)
    opt = make_optimizer(cfg, net, 1e-3, [0.5, 0.999])
    lr = opt.param_groups[0]["lr"]
    saved = make_optimizer(cfg, net, 1e-3, [0.5, 0.999]).state_dict()
    saved["param_groups"][0]["lr"] = torch.tensor(3e-4)  # another tensor, as torch.load gives it back
    saved["param_groups"][0]["foreach"] = True
    built = build_settings(opt)
    opt.load_state_dict(saved)
    put_back(opt, built)
    g = opt.param_groups[0]
    assert g["lr"] is lr and lr.item() == pytest.approx(3e-4) and g["foreach"] is None and g["fused"] is True
