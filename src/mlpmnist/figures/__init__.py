"""Every figure of the project, as functions: a results frame (or a model and data, or a
computed embedding) in, a ``matplotlib.figure.Figure`` out. Nothing here loads data or
checkpoints, trains, or writes files except ``save``; ``mlpmnist.figures`` composes them.

- ``style``: ``figure`` (the one way a figure is made), ``STYLE``, ``DPI``, ``batch_colors``,
  ``save`` (atomic PNG), ``facets`` (one panel per value of a second grid axis), ``panel_rows``,
  ``epoch_axis`` (integer epoch ticks).
- ``study``: ``accuracy_vs_epoch``, ``final_accuracy_vs_batch``, ``heatmap_batch_epoch``,
  ``train_vs_test``, ``dead_units``: each draws frames that ``stats`` made (``figures`` makes
  them once), and computes no statistic itself.
- ``model``: ``sample_digits``, ``confusion_matrix``, ``misclassified``, ``predictions_last10``,
  ``predict``, ``pick_model``.
- ``tsne``: ``plot_tsne``.
"""

from mlpmnist.analysis.columns import dead_columns
from mlpmnist.figures.model import (
    confusion_matrix,
    misclassified,
    pick_model,
    predict,
    predictions_last10,
    sample_digits,
)
from mlpmnist.figures.study import (
    accuracy_vs_epoch,
    dead_units,
    final_accuracy_vs_batch,
    heatmap_batch_epoch,
    train_vs_test,
)
from mlpmnist.figures.style import (
    DPI,
    ERROR_RED,
    REFERENCE_COLOR,
    STYLE,
    batch_colors,
    epoch_axis,
    facet_axes,
    facets,
    figure,
    grid,
    limits,
    panel_rows,
    save,
)
from mlpmnist.figures.tsne import plot_tsne

__all__ = [
    "DPI",
    "ERROR_RED",
    "REFERENCE_COLOR",
    "STYLE",
    "accuracy_vs_epoch",
    "batch_colors",
    "confusion_matrix",
    "dead_columns",
    "dead_units",
    "epoch_axis",
    "facet_axes",
    "facets",
    "figure",
    "final_accuracy_vs_batch",
    "grid",
    "heatmap_batch_epoch",
    "limits",
    "panel_rows",
    "misclassified",
    "pick_model",
    "plot_tsne",
    "predict",
    "predictions_last10",
    "sample_digits",
    "save",
    "train_vs_test",
]
