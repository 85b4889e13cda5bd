"""Every figure of the project, as functions: frames (or a model and data, an embedding) in, a
``Figure`` out, listed in ``registry``, styled by ``style``, drawn by source and saved in
``compose``. Importing this package loads none of them (the CLI's parser reads ``FORMATS``).
"""

#: The file formats a figure is saved in: PNG at ``style.DPI``, vector PDF and SVG.
FORMATS = ("png", "pdf", "svg")
