"""Figures from synthetic results frames (measured seed outcomes, no data files): the style,
saving, the registry, every study figure, frames of 1 epoch, 1 seed or 1 batch size (matplotlib
and seaborn warnings are errors there), and frames that hold several studies."""

from __future__ import annotations

import matplotlib as mpl
import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import LineCollection, PolyCollection, QuadMesh
from matplotlib.figure import Figure
from studies import B8, B16, B128, make_history

from mlpmnist.analysis import columns
from mlpmnist.figures import FORMATS, compose, registry, study, style
from mlpmnist.figures.registry import StudyFrames


def drawn(df: pd.DataFrame) -> StudyFrames:
    """What ``compose.study_figures`` hands the plot functions: the flagged history (curves),
    the final rows, the summary and the per-epoch medians."""
    return StudyFrames(df)


@pytest.fixture(scope="module")
def study4() -> StudyFrames:
    """Batch 8 with two outliers and a collapsed seed, batch 16 with one outlier, batch 128
    with ordinary jitter; 4 epochs."""
    return drawn(make_history({8: [*B8, 10.1], 16: B16, 128: B128}, epochs=4))


@pytest.fixture(scope="module")
def study15() -> StudyFrames:
    """``study4`` over the reference study's 15 epochs (at its lr, 0.1), so its values apply."""
    return drawn(make_history({8: [*B8, 10.1], 16: B16, 128: B128}, epochs=15))


@pytest.fixture(scope="module")
def two_lrs() -> StudyFrames:
    return drawn(
        pd.concat(
            [
                make_history({8: B8[8:], 64: B128}, epochs=15, lr=0.1),
                make_history({8: B16, 64: B128}, epochs=15, lr=0.03),
            ],
            ignore_index=True,
        )
    )


@pytest.fixture(scope="module")
def two_studies() -> StudyFrames:
    """A results folder holding two studies: 1 epoch at batch sizes 16, 48 and 128, and 15
    epochs at 32 and 64 (so the frame's batch sizes, in order met, are 16, 48, 128, 32, 64)."""
    return drawn(
        pd.concat(
            [
                make_history({16: B16, 48: B16, 128: B128}, epochs=1),
                make_history({32: B16, 64: B128}, epochs=15),
            ],
            ignore_index=True,
        )
    )


def _axes(fig: Figure) -> list:
    return [a for a in fig.axes if a.get_visible() and a.get_label() != "<colorbar>"]


def _gid(ax, gid: str) -> list:
    return [a for a in ax.get_children() if a.get_gid() == gid]


def _bands(ax) -> list:
    return [c for c in ax.collections if isinstance(c, PolyCollection)]


def _shown_ticks(ax) -> list[float]:
    lo, hi = ax.get_xlim()
    return [t for t in ax.get_xticks() if lo <= t <= hi]


# ------------------------------------------------------------------------------------ style


def test_batch_colors_are_ordered_by_size():
    colors = style.batch_colors([150, 8, 90, 8])
    assert list(colors) == [8, 90, 150]
    assert len(set(colors.values())) == 3


def test_figure_applies_the_style_inside_the_block_only():
    before = mpl.rcParams["font.size"]
    with style.figure(4, 3) as fig:
        assert mpl.rcParams["font.size"] == style.STYLE["font.size"]
        ax = fig.add_subplot()
        title = ax.set_title("t")
    assert isinstance(fig, Figure) and fig.get_size_inches().tolist() == [4, 3]
    assert title.get_fontsize() == style.STYLE["axes.titlesize"]
    assert mpl.rcParams["font.size"] == before


def test_save_writes_a_png_atomically_and_releases_the_figure(tmp_path):
    target = tmp_path / "media" / "f.png"
    with style.figure(4, 3) as fig:
        fig.add_subplot().plot([0, 1], [0, 1])
    assert compose.save_figures({"f": fig}, target.parent) == [target]
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert mpimg.imread(target).shape[:2] == (3 * style.DPI, 4 * style.DPI)
    assert not fig.axes  # released
    assert [p.name for p in target.parent.iterdir()] == ["f.png"]  # no temporary file left
    # A figure that fails to render leaves the existing file as it was.
    old = target.read_bytes()
    with style.figure(4, 3) as broken:
        broken.add_subplot()

    def fail(*args, **kwargs):
        raise RuntimeError("rendering failed")

    broken.savefig = fail
    with pytest.raises(RuntimeError):
        compose.save_figures({"f": broken}, target.parent)
    assert target.read_bytes() == old
    assert [p.name for p in target.parent.iterdir()] == ["f.png"]


def test_save_figures_writes_each_format_and_refuses_others(tmp_path):
    magic = {"png": b"\x89PNG", "pdf": b"%PDF", "svg": b"<?xml"}
    assert set(magic) == set(FORMATS)
    for fmt in FORMATS:
        with style.figure(4, 3) as fig:
            fig.add_subplot().plot([0, 1], [0, 1])
        (path,) = compose.save_figures({"line": fig}, tmp_path / fmt, fmt)
        assert path == tmp_path / fmt / f"line.{fmt}" and path.read_bytes().startswith(magic[fmt])
    with style.figure(4, 3) as fig:
        fig.add_subplot()
    with pytest.raises(ValueError, match="one of png, pdf, svg; got 'jpg'"):
        compose.save_figures({"line": fig}, tmp_path / "jpg", "jpg")
    assert not (tmp_path / "jpg").exists()  # refused before anything was written


def test_facets_find_the_second_grid_axis(two_lrs, study4):
    assert [t for t, _ in style.facets(two_lrs.curves)] == ["lr 0.03", "lr 0.1"]
    assert [t for t, _ in style.facets(study4.curves)] == [""]
    assert columns.varying_axes(two_lrs.curves) == ["batch_size", "lr"]
    # The summary faceted alike: each panel's rows are those at its lr.
    for (title, g), (same, rows) in zip(style.facets(two_lrs.fin), style.facets(two_lrs.summ), strict=True):
        assert title == same and len(rows) == 2 and (rows["lr"] == g["lr"].iloc[0]).all()


@pytest.mark.parametrize(
    ("field", "values", "order"),
    [
        ("optimizer", ["adam", "sgd"], ["optimizer sgd", "optimizer adam"]),  # TrainConfig's order
        (
            "schedule",
            ["linear", "cosine", "constant"],
            ["schedule constant", "schedule cosine", "schedule linear"],
        ),
        ("hidden", ["64x64", "128x128", "32x32"], ["hidden 32x32", "hidden 64x64", "hidden 128x128"]),
        ("epochs", [15, 1, 100], ["epochs 1", "epochs 15", "epochs 100"]),
    ],
)
def test_facets_come_in_the_grids_order_not_alphabetically(field, values, order):
    df = pd.concat(
        [make_history({32: B128[:3]}, **{"epochs": 3, field: v}) for v in values], ignore_index=True
    )
    assert [t for t, _ in style.facets(df)] == order


@pytest.mark.parametrize(("epochs", "ticks"), [([1], [1]), ([1, 2, 3], [1, 2, 3]), (range(1, 16), None)])
def test_epoch_ticks_are_integers(epochs, ticks):
    with style.figure(4, 3) as fig:
        ax = fig.add_subplot()
        ax.plot(list(epochs), list(epochs))
        style.epoch_axis(ax, epochs)
        fig.canvas.draw()
    shown = _shown_ticks(ax)
    assert all(float(t).is_integer() for t in shown)
    if ticks is not None:
        assert shown == ticks and [t.get_text() for t in ax.get_xticklabels()] == [str(t) for t in ticks]


# --------------------------------------------------------------------------------- registry


def test_the_registry_names_every_figure_once_by_its_source():
    assert len(registry.FIGURES) == len(set(registry.names())) and set(registry.SOURCES) == {
        e.source for e in registry.entries()
    }
    assert registry.names("results") == [
        "accuracy_vs_epoch",
        "final_accuracy_vs_batch",
        "heatmap_batch_epoch",
        "train_vs_test",
        "dead_units",
    ]
    assert registry.names(*registry.STUDY_SOURCES) + registry.names("science") == registry.names()
    assert all(callable(e.draw) and e.name.isidentifier() for e in registry.entries())
    assert registry.entry("science_tail", "science").draw is registry.FIGURES["science_tail"].draw
    with pytest.raises(ValueError, match="no figure 'science_tail' in the registry; known: sample_digits"):
        registry.entry("science_tail", "data")
    with pytest.raises(ValueError, match="unknown figure source"):
        registry.entries("frames")  # type: ignore[arg-type]


def test_every_results_entry_draws_and_saves(study4, tmp_path):
    figs = compose.study_figures(study4.curves)
    assert list(figs) == registry.names("results")
    for name in registry.names("results"):
        assert isinstance(figs[name], Figure) and figs[name].get_suptitle(), name
    paths = compose.save_figures(figs, tmp_path)
    assert [p.name for p in paths] == [f"{name}.png" for name in registry.names("results")]


def test_study_figures_skip_dead_units_without_the_columns(study4):
    figs = compose.study_figures(study4.curves.drop(columns=["dead_1", "dead_2"]))
    assert list(figs) == [n for n in registry.names("results") if n != "dead_units"]


def test_study_frames_compute_each_statistic_once(study4):
    frames = StudyFrames(study4.curves)
    assert frames.summ is frames.summ and frames.per is frames.per and frames.fin is frames.fin


# ---------------------------------------------------------------------------- study figures


def test_accuracy_vs_epoch_medians_and_quartile_bands(study4):
    fig = study.accuracy_vs_epoch(study4.curves, study4.summ)
    (ax,) = _axes(fig)
    assert ax.get_xlabel() == "epoch" and ax.get_ylabel() == "test accuracy (%)"
    lines = [line for line in ax.lines if len(line.get_xdata()) == 4]
    assert len(lines) == 3  # one median line per batch size
    assert len(_bands(ax)) == 3  # quartile bands
    expected = 100 * np.median(B128) / 100
    assert lines[-1].get_ydata()[-1] == pytest.approx(expected)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["8", "16", "128"]
    assert "median of 10–21 seeds" in fig.get_suptitle() and "quartiles" in fig.get_suptitle()


def test_accuracy_vs_epoch_holds_every_quartile_band(study15):
    # Batch 8's heavy tail: its lower quartile lies far below every median; no band is cut off.
    (ax,) = _axes(study.accuracy_vs_epoch(study15.curves, study15.summ))
    lo, hi = ax.get_ylim()
    q1 = 100 * study15.per["test_acc_q1"].min()
    medians = 100 * study15.per["test_acc_median"]
    assert q1 < medians.min() - 5  # the band reaches well below the lowest median...
    assert lo <= q1 and hi >= 100 * study15.per["test_acc_q3"].max()  # ...and the axis holds it
    for band in _bands(ax):
        ys = np.concatenate([p.vertices[:, 1] for p in band.get_paths()])
        assert lo <= ys.min() and ys.max() <= hi


def test_accuracy_vs_epoch_facets_by_lr(two_lrs):
    axes = _axes(study.accuracy_vs_epoch(two_lrs.curves, two_lrs.summ))
    assert [a.get_title() for a in axes] == ["lr 0.03", "lr 0.1"]


def test_final_accuracy_vs_batch_shows_seeds_failures_outliers_and_the_reference(study15):
    fig = study.final_accuracy_vs_batch(study15.fin, study15.summ)
    (ax,) = _axes(fig)
    (failed,) = _gid(ax, "failed")  # failed seeds: one artist of their own...
    assert len(failed.get_offsets()) == 1  # the collapsed seed, 10.1 at batch 8
    (outliers,) = _gid(ax, "outlier")  # ...and outliers another
    assert len(outliers.get_offsets()) == 3  # 48.79, 61.42 at batch 8; 89.04 at batch 16
    lo = ax.get_ylim()[0]
    assert 61.42 < lo < 80.72  # fitted to the seeds that neither failed nor are outliers...
    assert any(t.get_text() == "below: 10.1, 48.8, 61.4" for t in ax.texts)  # ...the others printed
    (ref,) = _gid(ax, "reference")
    assert sorted(np.round(ref.get_offsets()[:, 1], 2)) == [91.48, 94.0, 97.11]
    (headline,) = _gid(ax, "reference_headline")
    assert headline.get_ydata()[0] == pytest.approx(97.64)
    medians = ax.containers[-1].lines[0].get_ydata()
    assert np.allclose(medians, [np.median([*B8, 10.1]), np.median(B16), np.median(B128)])
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels[0] == "seed" and "median, 95% bootstrap CI" in labels
    assert "failed seed (collapsed to chance)" in labels
    assert "outlier (finished far below its median)" in labels
    assert any(label.startswith("reference study, epoch 15") for label in labels)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["8\nn=21", "16\nn=10", "128\nn=10"]


def test_final_accuracy_vs_batch_draws_no_reference_outside_its_setup(study4):
    (ax,) = _axes(study.final_accuracy_vs_batch(study4.fin, study4.summ))  # 4 epochs, not 15
    assert not _gid(ax, "reference") and not _gid(ax, "reference_headline")
    fashion = drawn(make_history({8: B8, 128: B128}, epochs=15, dataset="fashion-mnist"))
    (ax,) = _axes(study.final_accuracy_vs_batch(fashion.fin, fashion.summ))
    assert not _gid(ax, "reference") and not _gid(ax, "reference_headline")


def test_final_accuracy_vs_batch_facets_and_puts_the_reference_at_its_lr(two_lrs):
    axes = _axes(study.final_accuracy_vs_batch(two_lrs.fin, two_lrs.summ))
    assert [a.get_title() for a in axes] == ["lr 0.03", "lr 0.1"]
    assert not _gid(axes[0], "reference") and len(_gid(axes[1], "reference")) == 1
    assert not _gid(axes[0], "reference_headline") and len(_gid(axes[1], "reference_headline")) == 1


def test_heatmap_of_medians(study4):
    fig = study.heatmap_batch_epoch(study4.per, study4.summ)
    ax = _axes(fig)[0]
    (mesh,) = [c for c in ax.collections if isinstance(c, QuadMesh)]
    assert mesh.get_array().size == 3 * 4
    assert ax.get_xlabel() == "epoch" and ax.get_ylabel() == "batch size"
    expected = 100 * study4.curves.groupby(["batch_size", "epoch"])["test_acc"].median()
    np.testing.assert_allclose(sorted(float(t.get_text()) for t in ax.texts), sorted(expected), atol=0.051)
    assert mesh.norm.vmin > expected.min() and mesh.norm.vmax == pytest.approx(expected.max())


def test_heatmap_shows_a_subset_of_many_epochs_and_facets(study4, two_lrs):
    ax = _axes(study.heatmap_batch_epoch(study4.per, study4.summ, max_epochs=2))[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "4"]
    assert "subset" in ax.get_xlabel()
    titles = [a.get_title() for a in _axes(study.heatmap_batch_epoch(two_lrs.per, two_lrs.summ))]
    assert titles == ["lr 0.03", "lr 0.1"]


def test_train_vs_test(study4, two_lrs):
    axes = _axes(study.train_vs_test(study4.curves, study4.summ))
    assert len(axes) == 2 * 3  # accuracy and loss per batch size
    assert all(len(ax.lines) == 2 for ax in axes)  # train and test medians
    assert {ax.get_title() for ax in axes if ax.get_title()} == {"batch 8", "batch 16", "batch 128"}
    assert {ax.get_ylabel() for ax in axes} >= {"accuracy (%)", "loss (nats)"}
    titles = {
        ax.get_title()
        for ax in _axes(study.train_vs_test(two_lrs.curves, two_lrs.summ, ncols=2))
        if ax.get_title()
    }
    assert titles == {"batch 8, lr 0.03", "batch 8, lr 0.1", "batch 64, lr 0.03", "batch 64, lr 0.1"}


def test_train_vs_test_holds_every_quartile_band(study15):
    axes = _axes(study.train_vs_test(study15.curves, study15.summ))
    for ax in axes:
        lo, hi = ax.get_ylim()
        for band in _bands(ax):
            ys = np.concatenate([p.vertices[:, 1] for p in band.get_paths()])
            assert lo <= ys.min() and ys.max() <= hi, ax.get_title()


def test_dead_units_marks_failed_runs_and_outliers_apart(study4, two_lrs):
    fig = study.dead_units(study4.curves, study4.summ)
    axes = _axes(fig)
    assert [a.get_title() for a in axes] == ["hidden layer 1", "hidden layer 2"]
    for ax in axes:
        # The failed (collapsed) seed: a dashed line and a red cross at its end...
        failed = _gid(ax, "failed")
        assert len(failed) == 2 and {a.get_linestyle() for a in failed} == {"--", "None"}
        # ...each of the three outliers a dotted line and a red ring.
        outliers = _gid(ax, "outlier")
        assert len(outliers) == 2 * 3 and {a.get_linestyle() for a in outliers} == {":", "None"}
        assert len(_bands(ax)) == 3
    assert axes[0].get_ylabel() == "dead units (% of the layer)"
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "failed seed (collapsed to chance), one line each" in labels
    assert "outlier (finished far below its median), one line each" in labels
    assert len(_axes(study.dead_units(two_lrs.curves, two_lrs.summ))) == 2 * 2  # layers x lrs


def test_dead_units_needs_the_dead_columns(study4):
    with pytest.raises(ValueError, match="no dead-unit columns"):
        study.dead_units(study4.curves.drop(columns=["dead_1", "dead_2"]), study4.summ)


def test_plots_need_the_flags_of_mark_failed(study4):
    with pytest.raises(ValueError, match="stats.mark_failed"):
        study.accuracy_vs_epoch(study4.curves.drop(columns=["failed", "outlier"]), study4.summ)


# ---------------------------------------------------------------- a folder of several studies


def test_accuracy_vs_epoch_of_two_studies(two_studies):
    fig = study.accuracy_vs_epoch(two_studies.curves, two_studies.summ)
    one, fifteen = _axes(fig)
    assert [one.get_title(), fifteen.get_title()] == ["epochs 1", "epochs 15"]
    fig.canvas.draw()
    assert _shown_ticks(one) == [1]  # its own epoch axis, not 1 to 15
    assert max(_shown_ticks(fifteen)) >= 14 and fifteen.get_xlim()[1] > 15
    # The legend: every batch size once, in numeric order (not 16, 48, 128, 32, 64).
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["16", "32", "48", "64", "128"]
    # One epoch: the quartiles as a bar at that epoch (a band there would have no width).
    assert not _bands(one) and len([c for c in one.collections if isinstance(c, LineCollection)]) == 3


def test_final_accuracy_vs_batch_of_two_studies_shows_each_panels_batch_sizes(two_studies):
    one, fifteen = _axes(study.final_accuracy_vs_batch(two_studies.fin, two_studies.summ))
    assert [t.get_text().split("\n")[0] for t in one.get_xticklabels()] == ["16", "48", "128"]
    assert [t.get_text().split("\n")[0] for t in fifteen.get_xticklabels()] == ["32", "64"]
    assert all("n=0" not in t.get_text() for ax in (one, fifteen) for t in ax.get_xticklabels())


def test_train_vs_test_and_dead_units_of_two_studies_give_each_its_epochs(two_studies):
    fig = study.train_vs_test(two_studies.curves, two_studies.summ, ncols=5)
    fig.canvas.draw()
    accs, losses = _axes(fig)[:5], _axes(fig)[5:]
    assert [a.get_title() for a in accs] == [f"batch {b}, epochs 1" for b in (16, 48, 128)] + [
        f"batch {b}, epochs 15" for b in (32, 64)
    ]
    assert [_shown_ticks(a) for a in losses[:3]] == [[1]] * 3  # not 1 to 15
    assert all(max(_shown_ticks(a)) >= 12 for a in losses[3:])
    fig = study.dead_units(two_studies.curves, two_studies.summ)
    fig.canvas.draw()
    rows = _axes(fig)
    assert [a.get_title() for a in rows] == [
        "hidden layer 1, epochs 1",
        "hidden layer 2, epochs 1",
        "hidden layer 1, epochs 15",
        "hidden layer 2, epochs 15",
    ]
    assert _shown_ticks(rows[0]) == [1] and max(_shown_ticks(rows[2])) >= 14


def test_heatmap_of_two_studies_sizes_each_panel_by_its_epochs(two_studies):
    one, fifteen = _axes(study.heatmap_batch_epoch(two_studies.per, two_studies.summ))
    assert [one.get_title(), fifteen.get_title()] == ["epochs 1", "epochs 15"]
    assert len(one.get_xticklabels()) == 1 and len(fifteen.get_xticklabels()) == 15
    assert [t.get_text() for t in one.get_yticklabels()] == ["16", "48", "128"]
    assert one.get_position().width < fifteen.get_position().width / 2


# ------------------------------------------------------- 1 epoch, 1 seed, 1 batch size


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize(
    "df",
    [
        make_history({32: [26.6]}, epochs=1),  # 1 seed, 1 epoch, 1 batch size
        make_history({32: [26.6], 64: [30.0]}, epochs=1),  # 1 seed each
        make_history({32: [97.0, 97.2, 96.8]}, epochs=1),  # 1 epoch, 3 seeds
        make_history({32: B128}, epochs=3),  # 1 batch size
        make_history({32: [10.0, 11.0, 10.5], 64: [float("nan")] * 2}, epochs=4),  # every seed failed
    ],
    ids=["1seed-1epoch-1batch", "1seed-2batches", "1epoch", "1batch", "all-failed"],
)
def test_study_figures_of_small_frames_draw_without_warnings(df):
    figs = compose.study_figures(df)
    assert list(figs) == registry.names("results")
    for fig in figs.values():
        fig.draw_without_rendering()  # layout and every artist, as saving would


def test_train_vs_test_after_one_epoch_shows_points():
    d = drawn(make_history({32: [97.0, 97.2, 96.8]}, epochs=1))
    for ax in _axes(study.train_vs_test(d.curves, d.summ)):
        points = [line for line in ax.lines if line.get_marker() == "o"]
        assert len(points) == 2 and all(len(line.get_xdata()) == 1 for line in points)  # train, test
        assert len([c for c in ax.collections if isinstance(c, LineCollection)]) == 2  # their quartiles


def test_final_accuracy_figure_is_the_registry_entry(study4):
    live = compose.final_accuracy_figure(study4.curves)
    direct = study.final_accuracy_vs_batch(study4.fin, study4.summ)
    assert live.get_suptitle() == direct.get_suptitle()
    ticks = [[t.get_text() for t in _axes(f)[0].get_xticklabels()] for f in (live, direct)]
    assert ticks[0] == ticks[1] == ["8\nn=21", "16\nn=10", "128\nn=10"]


def test_the_headline_figure_names_its_rows_in_words_on_a_readable_ratio_axis():
    from mlpmnist.figures import science

    rows = [
        {"name": "lr@8", "estimate": 0.02, "low": 0.015, "high": 0.03, "second": 0.02, "inside": True},
        {"name": "b_crit", "estimate": 143.0, "low": 97.0, "high": 159.0, "second": 131.0, "inside": True},
        {"name": "rms_ratio", "estimate": 1.8, "low": 1.4, "high": 2.4, "second": 1.8, "inside": True},
    ]
    fig = science.headlines({"steps to 97%": pd.DataFrame(rows)})
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == [
        "steps to 97% at B = 8",
        "steps to 97%: B_crit",
        "steps to 97%: rms ratio, power law / saturating",
    ]
    assert {"0.7", "1", "1.4"} <= {t.get_text() for t in ax.get_xticklabels()}
