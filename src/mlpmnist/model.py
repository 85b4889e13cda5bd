"""The reference multilayer perceptron: 784 -> 64 -> 64 -> 10 with ReLU (or leaky ReLU)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mlpmnist.config import ACTIVATIONS

#: Leaky ReLU's slope for negative inputs: torch's default (``F.leaky_relu``'s negative_slope).
LEAKY_SLOPE = 0.01


def activate(z: torch.Tensor, activation: str, inplace: bool = False) -> torch.Tensor:
    """``activation`` (of ``config.ACTIVATIONS``, which ``MLP`` checks) applied to pre-activations ``z``."""
    if activation == "leaky_relu":
        return F.leaky_relu(z, LEAKY_SLOPE, inplace=inplace)
    return F.relu(z, inplace=inplace)


class MLP(nn.Module):
    """Fully connected network returning logits (softmax lives in the loss). Weights are
    Xavier-uniform, biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)) as ``nn.Linear``'s, drawn from
    ``generator`` when given (``nn.Linear``'s own initialisation, which these replace, still
    advances the global RNG)."""

    def __init__(
        self,
        hidden: Sequence[int] = (64, 64),
        n_in: int = 784,
        n_out: int = 10,
        generator: torch.Generator | None = None,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}; got {activation!r}")
        self.activation = activation
        linears = [nn.Linear(a, b) for a, b in itertools.pairwise([n_in, *hidden, n_out])]
        for layer in linears:  # nn.init writes without autograd
            nn.init.xavier_uniform_(layer.weight, generator=generator)
            bound = 1.0 / math.sqrt(layer.in_features)
            nn.init.uniform_(layer.bias, -bound, bound, generator=generator)
        self.layers = nn.ModuleList(linears)

    @classmethod
    def from_state_dict(cls, state_dict: dict[str, torch.Tensor], activation: str = "relu") -> MLP:
        """An ``MLP`` in eval mode holding ``state_dict`` (its layer sizes read from the weights;
        the activation is not in it: the run's config says which)."""
        sizes = [state_dict[f"layers.{i}.weight"].shape for i in range(len(state_dict) // 2)]
        model = cls(tuple(s[0] for s in sizes[:-1]), sizes[0][1], sizes[-1][0], activation=activation)
        model.load_state_dict(state_dict)
        return model.eval()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Activations of the last hidden layer, [N, hidden[-1]]."""
        for layer in self.layers[:-1]:
            x = activate(layer(x), self.activation)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits, [N, 10]."""
        return self.layers[-1](self.features(x))
