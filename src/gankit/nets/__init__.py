"""Networks only: G(z) -> x and D(x) -> raw logits. No optimizer, loss or loop lives here."""

import torch

from gankit.nets.dcgan import DCGANDiscriminator, DCGANGenerator, cs231n_dc_discriminator, cs231n_dc_generator
from gankit.nets.mlp import MLPDiscriminator, MLPGenerator

__all__ = [
    "MLPGenerator",
    "MLPDiscriminator",
    "DCGANGenerator",
    "DCGANDiscriminator",
    "cs231n_dc_generator",
    "cs231n_dc_discriminator",
    "count_params",
    "spectral_normalise",
]


def count_params(net) -> int:
    """Number of trainable parameters (BatchNorm running statistics are buffers, not counted)."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def spectral_normalise(net: torch.nn.Module) -> torch.nn.Module:
    """Divide the weight of every linear and conv layer by its largest singular value, estimated by
    one power iteration per forward pass (Miyato et al. 2018): each layer is then 1-Lipschitz."""
    for m in list(net.modules()):
        if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)):
            torch.nn.utils.parametrizations.spectral_norm(m)
    return net
