"""Faster paths on a CUDA device: the eager steps recorded as CUDA graphs (``graphs``) and a span
of steps as one Triton kernel (``fused``)."""
