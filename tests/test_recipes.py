"""One test over every recipe: shapes, a finite training step, a checkpoint round trip."""

import json

import pytest
import torch

from gankit.config import validate
from gankit.errors import GankitError
from gankit.nets import count_params
from gankit.recipes import RECIPES, networks
from gankit.run import load_checkpoint
from gankit.sample import grid_inputs, load_generator
from gankit.train import train

# dcgan64 / wgan / wgan-gp are exercised at 16 px: the same code path as 64 px, in a tenth of the time.
SMALL = {"dcgan64": 16, "wgan": 16, "wgan-gp": 16}


def small_config(name, tmp_path, **over):
    r = RECIPES[name]
    settings = dict(out=str(tmp_path / name), steps=2, batch_size=16, log_every=1, sample_every=1,
                    checkpoint_every=1, grid_size=16, limit=0)  # tiny_data holds 256 images
    if name in SMALL:
        settings["image_size"] = SMALL[name]
    return r.config(**{**settings, **over})


@pytest.mark.parametrize("name", list(RECIPES))
def test_recipe_trains_and_round_trips(name, tmp_path, tiny_data):
    cfg = small_config(name, tmp_path)
    summary = train(cfg, progress=False)
    run = tmp_path / name
    rows = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    for r in rows:
        assert all(isinstance(v, (int, float)) and v == v for v in r.values())  # finite numbers, no NaN
        assert "d_loss" in r and "g_loss" in r
    assert summary["steps"] == 2
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["step-000000.png", "step-000001.png",
                                                                    "step-000002.png"]

    state = load_checkpoint(run)
    assert state["step"] == 2 and state["config"].recipe == name
    G, cfg2 = load_generator(run, device="cpu")
    inputs = grid_inputs(cfg2, 4) if cfg2.conditional else (torch.randn(4, cfg2.noise_dim),)  # (z,) or (z, y)
    x = G(*inputs)
    n = len(inputs[0])
    assert list(x.shape) == [n, *cfg2.data_shape]
    G2, D2 = networks(cfg2)
    G2.load_state_dict(state["G_ema"] if "G_ema" in state else state["G"])  # what sampling uses
    D2.load_state_dict(state["D"])
    G2.eval()
    assert torch.equal(G2(*inputs), x)
    # semi-supervised: 10 classes + fake; acgan: the logit + 10 classes
    assert D2(x, *inputs[1:]).shape == ((n, 11) if hasattr(D2, "head") or cfg2.conditional == "acgan" else (n, 1))
    if cfg2.data_shape != [2]:
        assert x.min() >= -1 and x.max() <= 1


def test_cs231n_parameter_counts():
    def counts(name, noise_dim):
        cfg = RECIPES[name].config(noise_dim=noise_dim)
        cfg.data_shape = [1, 28, 28]
        G, D = RECIPES[name].nets(cfg)
        return count_params(D), count_params(G)

    assert counts("cs231n-gan", 4) == (267_009, 1_858_320)
    assert counts("cs231n-dcgan", 4) == (1_102_721, 6_580_801)


def test_discriminators_end_in_raw_logits():
    for name, r in RECIPES.items():
        cfg = r.config(**({"image_size": SMALL[name]} if name in SMALL else {}))
        cfg.data_shape = [2] if cfg.dataset.startswith("toy:") else [1, cfg.image_size or 28, cfg.image_size or 28]
        _, D = r.nets(cfg)
        assert not any(isinstance(m, torch.nn.Sigmoid) for m in D.modules()), name


def test_every_recipe_names_its_source():
    for r in RECIPES.values():
        assert r.source and len(r.doc) > 80


def test_conditioning_a_classifier_discriminator_and_class_acc_without_classes_are_refused(tmp_path, tiny_data):
    cfg = small_config("improved-gan", tmp_path, labels_per_class=0, conditional="projection", eval_every=0)
    with pytest.raises(GankitError, match=r"conditional=projection: recipe improved-gan's discriminator is a classifier"):
        train(cfg, progress=False)
    with pytest.raises(GankitError, match=r"eval_metrics=class_acc: per-class accuracy needs a conditional run"):
        validate(small_config("cs231n-gan", tmp_path, eval_every=10, eval_metrics=["fid", "class_acc"]))
