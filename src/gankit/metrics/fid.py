"""The Fréchet distance between two Gaussians, the formula of FID (Heusel et al. 2017, "GANs Trained
by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium"):

    d^2 = |mu1 - mu2|^2 + tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2))

computed as StyleGAN3's metrics/frechet_inception_distance.py does: scipy.linalg.sqrtm of the
product, real part of the trace. scipy is optional: without it the trace of the square root comes
from two symmetric eigendecompositions in numpy float64 (exact for covariance matrices).
"""

from __future__ import annotations

import warnings

import numpy as np

from gankit.errors import GankitError


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2); tensors or arrays, any float dtype."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    d = mu1.shape[0] if mu1.ndim == 1 else -1
    if mu1.shape != (d,) or mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise GankitError(f"frechet_distance: expected mu (D,) and sigma (D, D) for both sets, got "
                          f"{mu1.shape}, {sigma1.shape}, {mu2.shape}, {sigma2.shape}")
    m = np.square(mu1 - mu2).sum()
    return float(m + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt_product(sigma1, sigma2))


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """tr((sigma1 sigma2)^(1/2)): scipy.linalg.sqrtm when scipy is installed, else trace_sqrt_product_eigh."""
    try:
        import scipy.linalg
    except ImportError:
        return trace_sqrt_product_eigh(sigma1, sigma2)
    with warnings.catch_warnings():
        # Singular covariances are normal (fewer samples than dimensions, dead ReLU units); the trace
        # stays accurate (tests check it against the eigendecomposition), so scipy's warning is noise.
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        root = scipy.linalg.sqrtm(sigma1 @ sigma2)
    tr = np.real(np.trace(root))  # sqrtm may return tiny imaginary parts; StyleGAN3 keeps the real part
    return float(tr) if np.isfinite(tr) else trace_sqrt_product_eigh(sigma1, sigma2)


def trace_sqrt_product_eigh(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """tr((sigma1 sigma2)^(1/2)) for symmetric positive semi-definite sigma1, sigma2, without scipy.

    sigma1 sigma2 is similar to A = sigma1^(1/2) sigma2 sigma1^(1/2), which is symmetric PSD, so the
    eigenvalues of their square roots agree and the trace is sum(sqrt(eig(A))). Tiny negative
    eigenvalues from rounding are clipped to zero.
    """
    w, v = np.linalg.eigh(sigma1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T  # sigma1^(1/2)
    a = root1 @ sigma2 @ root1
    eig = np.linalg.eigvalsh((a + a.T) / 2)
    return float(np.sqrt(np.clip(eig, 0, None)).sum())
