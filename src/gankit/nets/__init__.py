"""Networks only: G(z) -> x and D(x) -> raw logits. No optimizer, loss or loop lives here."""

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
]


def count_params(net) -> int:
    """Number of trainable parameters (BatchNorm running statistics are buffers, not counted)."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)
