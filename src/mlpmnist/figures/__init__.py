"""Every figure of the project, as functions: a results frame (or a model and data, an embedding,
a science frame) in, a ``matplotlib.figure.Figure`` out; nothing here loads, trains, or writes
files except ``style.save``. ``registry`` lists every figure (a new figure is its function and
one entry there); ``compose`` draws a source's entries from what the caller loaded; ``style`` is
how every figure is made and saved; ``study``, ``model``, ``tsne`` (of ``embed``'s t-SNE) and
``science`` draw. Importing this package loads none of them (the CLI's parser reads ``FORMATS``).
"""

#: The file formats a figure is saved in (``style.save``): PNG at ``style.DPI``, vector PDF and SVG.
FORMATS = ("png", "pdf", "svg")
