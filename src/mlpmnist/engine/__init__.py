"""The engine stage: how R replicas of the MLP take their steps.

``stacked`` (the fast, eager engine), ``reference`` (the autograd oracle), ``rules`` (one update
rule per optimizer) and ``cuda`` (graphs and a fused kernel, faster paths on a GPU that check
themselves against the eager path on first use)."""
