"""Every figure of the project, as functions: a results frame (or a model and data, or a computed
embedding, or a science frame) in, a ``matplotlib.figure.Figure`` out. Nothing here loads data or
checkpoints, trains, or writes files except ``style.save``.

- ``registry``: the one list of figures, the study's and the science's: name -> what it is
  drawn from, its function, what it shows. A new figure is its function and one entry there.
- ``compose``: every registry figure of a source drawn from what the caller loaded (the study's
  statistics computed once), and ``save_figures`` (any name -> figure mapping into a folder).
- ``style``: ``figure`` (the one way a figure is made), ``STYLE``, ``DPI``, ``batch_colors``,
  ``save`` (atomic), ``facets`` (one panel per value of a second grid axis, in the grid's
  order), ``panel_rows``, ``epoch_axis`` (integer epoch ticks), ``limits``.
- ``study``: ``accuracy_vs_epoch``, ``final_accuracy_vs_batch``, ``heatmap_batch_epoch``,
  ``train_vs_test``, ``dead_units``: each draws frames that ``stats`` made, and computes no
  statistic itself.
- ``model``: ``sample_digits``, ``confusion_matrix``, ``misclassified``, ``predictions_last10``
  (image shape and class names from the dataset's spec), ``predict``, ``pick_model``.
- ``embed`` (t-SNE of the last hidden layer, computed) and ``tsne``: ``plot_tsne``.
- ``science``: the batch-size science's figures.

Importing this package loads none of them (the CLI's parser reads ``FORMATS`` from here).
"""

#: The file formats a figure is saved in (``style.save``): PNG at ``style.DPI``, vector PDF and SVG.
FORMATS = ("png", "pdf", "svg")
