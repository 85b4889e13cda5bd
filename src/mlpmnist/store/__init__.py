"""The results store: keys on disk, atomic files, records, weights, the one trust check every
reader uses, and the tidy frame."""

from mlpmnist.store.results import *  # noqa: F403
from mlpmnist.store.results import load, path  # noqa: F401
