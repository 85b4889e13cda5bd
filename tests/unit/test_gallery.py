"""run.ipynb's gallery: each section shows its figure, the rest shows every other one, all are saved."""

import pytest

from mlpmnist.figures import style
from mlpmnist.workbench.gallery import Gallery


def _fig(title: str):
    with style.figure(3, 2) as fig:
        fig.add_subplot().plot([0, 1], [0, 1])
        fig.suptitle(title)
    return fig


def test_the_gallery_shows_each_figure_once_and_saves_them_all(tmp_path, capsys):
    gallery = Gallery()
    gallery.add({"a": _fig("a"), "b": _fig("b")})
    gallery.add({"c": _fig("c")})
    assert gallery.show("a").get_suptitle() == "a"
    with pytest.raises(ValueError, match="figure 'dead_units' was not drawn here; drawn: a, b, c"):
        gallery.show("dead_units")
    gallery.rest()  # b and c: no section showed them; each named, then displayed (its repr here)
    out = capsys.readouterr().out.splitlines()
    assert [line for line in out if not line.startswith("Figure(")] == ["b", "c"] and len(out) == 4
    assert gallery.shown == {"a", "b", "c"}
    gallery.rest()
    assert "none: every figure drawn has its section above" in capsys.readouterr().out
    assert [p.name for p in gallery.save(tmp_path, "pdf")] == ["a.pdf", "b.pdf", "c.pdf"]
