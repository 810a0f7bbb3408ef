"""gankit: every classic GAN in one clean trainer."""

__version__ = "0.1.0"
