"""The figures a notebook draws, by their registry names, and which of them a cell has shown:
``rest`` shows every figure no section showed, so a figure added to the registry appears in
run.ipynb (and is saved with the others) before it gets a section of its own.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from matplotlib.figure import Figure


class Gallery:
    """Name -> figure of everything drawn so far (``figures``), and the names shown (``shown``)."""

    def __init__(self) -> None:
        self.figures: dict[str, Figure] = {}
        self.shown: set[str] = set()

    def add(self, figs: Mapping[str, Figure]) -> None:
        """Keep ``figs`` (name -> figure); a name drawn again replaces the earlier figure."""
        self.figures.update(figs)

    def show(self, name: str) -> Figure:
        """The figure called ``name``, for its cell to display, marked as shown. ``ValueError``
        naming the drawn ones when it was not drawn (dead units need their columns)."""
        if name not in self.figures:
            drawn = ", ".join(self.figures) or "none yet"
            raise ValueError(f"figure {name!r} was not drawn here; drawn: {drawn}")
        self.shown.add(name)
        return self.figures[name]

    def rest(self) -> None:
        """Display every figure that no ``show`` has shown, each under its name, or say there is none."""
        from IPython.display import display

        rest = [name for name in self.figures if name not in self.shown]
        if not rest:
            print("none: every figure drawn has its section above")
        for name in rest:
            print(name)
            display(self.show(name))

    def save(self, folder: str | os.PathLike, format: str = "png") -> list[Path]:
        """``compose.save_figures`` of every figure; returns the paths."""
        from mlpmnist.figures.compose import save_figures

        return save_figures(self.figures, folder, format)
