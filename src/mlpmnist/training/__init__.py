"""The training stage: the one loop (``loop.train``) and its result, batches and augmentation,
groups of experiments trained as one engine, and many groups on one device."""
