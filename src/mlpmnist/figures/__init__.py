"""Every figure of the project, as functions: frames (or a model and data, an embedding) in, a
``Figure`` out, listed in ``registry``, drawn by source in ``compose``, styled and saved by
``style``. Importing this package loads none of them (the CLI's parser reads ``FORMATS``).
"""

#: The file formats a figure is saved in (``style.save``): PNG at ``style.DPI``, vector PDF and SVG.
FORMATS = ("png", "pdf", "svg")
