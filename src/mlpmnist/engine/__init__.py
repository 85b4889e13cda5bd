"""The engine stage: how R replicas of the MLP take their steps: ``stacked`` (fast, eager),
``reference`` (the autograd oracle), ``rules`` (one per optimizer) and ``cuda`` (graphs and a fused
kernel, faster paths on a GPU that check themselves against the eager path on first use)."""
