"""The data stage: one ``DatasetSpec`` per dataset (``specs``), and its four IDX files read,
checked, downloaded and held in memory as tensors (``loader``). Importing this package loads
nothing heavy; ``loader`` brings torch."""
