"""Class-conditional G and D built around any of gankit's unconditional networks.

G(z, y): the label's learnt embedding is appended to z, so the wrapped G is built for noise_dim +
embed_dim inputs (Mirza & Osindero 2014). D(x, y) splits the wrapped D, a Sequential whose last
layer gives the logit, into φ (every layer but the last) and ψ (the last), and adds:

- projection (Miyato & Koyama 2018): D(x, y) = ψ(φ(x)) + ⟨e_y, h(x)⟩, h the features φ(x) (summed
  over space for a conv D). D then returns (B, 1), a logit for any objective.
- acgan (Odena et al. 2017): D also predicts the class from h(x), a head of K logits; D returns
  (B, 1 + K) and the step adds the cross-entropy of the class logits on real and fake images.
"""

from __future__ import annotations

import torch
from torch import nn

KINDS = ("projection", "acgan")


class ConditionalGenerator(nn.Module):
    def __init__(self, G: nn.Module, num_classes: int, embed_dim: int):
        super().__init__()
        self.G, self.embed = G, nn.Embedding(num_classes, embed_dim)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.G(torch.cat([z, self.embed(y).to(z.dtype)], dim=1))


class ConditionalDiscriminator(nn.Module):
    def __init__(self, D: nn.Module, num_classes: int, kind: str):
        super().__init__()
        layers = list(D.net if hasattr(D, "net") else D)
        while isinstance(layers[-1], nn.Flatten):  # a conv D's last conv is ψ
            layers.pop()
        self.phi, self.psi = nn.Sequential(*layers[:-1]), layers[-1]
        width = self.psi.in_features if isinstance(self.psi, nn.Linear) else self.psi.in_channels
        self.kind = kind
        if kind == "projection":
            self.embed = nn.Embedding(num_classes, width)
            nn.init.normal_(self.embed.weight, std=0.02)
        else:
            self.classes = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.phi(x)
        logit = self.psi(h).flatten(1)  # (B, 1)
        pooled = h if h.dim() == 2 else h.sum(dim=(2, 3))
        if self.kind == "projection":
            return logit + (self.embed(y).to(pooled.dtype) * pooled).sum(dim=1, keepdim=True)
        return torch.cat([logit, self.classes(pooled)], dim=1)
