"""The reference multilayer perceptron: 784 -> 64 -> 64 -> 10 with ReLU."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import nn


class MLP(nn.Module):
    """Fully connected ReLU network returning logits (softmax lives in the loss).

    Weights are Xavier-uniform; biases follow ``nn.Linear``'s default,
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)). Passing ``generator`` makes the init reproducible
    without touching the global RNG.
    """

    def __init__(
        self,
        hidden: Sequence[int] = (64, 64),
        n_in: int = 784,
        n_out: int = 10,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        sizes = [n_in, *hidden, n_out]
        linears = [nn.Linear(a, b) for a, b in itertools.pairwise(sizes)]
        with torch.no_grad():
            for layer in linears:
                nn.init.xavier_uniform_(layer.weight, generator=generator)
                bound = 1.0 / math.sqrt(layer.in_features)
                nn.init.uniform_(layer.bias, -bound, bound, generator=generator)
        self.layers = nn.ModuleList(linears)

    @classmethod
    def from_state_dict(cls, state_dict: dict[str, torch.Tensor]) -> MLP:
        """An ``MLP`` in eval mode holding ``state_dict`` (its layer sizes read from the weights)."""
        n = len(state_dict) // 2
        sizes = [state_dict[f"layers.{i}.weight"].shape for i in range(n)]
        model = cls(tuple(s[0] for s in sizes[:-1]), n_in=sizes[0][1], n_out=sizes[-1][0])
        model.load_state_dict(state_dict)
        return model.eval()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Activations of the last hidden layer, [N, hidden[-1]] (after ReLU)."""
        for layer in self.layers[:-1]:
            x = torch.relu(layer(x))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits, [N, 10]."""
        return self.layers[-1](self.features(x))


def n_parameters(model: nn.Module) -> int:
    """Number of trainable scalars."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
