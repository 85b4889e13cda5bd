"""The committed CSVs and the README's study blocks generated from them: the table, the findings
and the dead units, so every number in the README's study prose comes from the committed numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from studies import B8, B128, make_history, readme_mismatches

from mlpmnist.analysis import compare, stats, tables
from mlpmnist.workbench import report

ROOT = Path(__file__).resolve().parents[2]
README = """# A project

Some prose.

<!-- results-table:start -->
(stale)
<!-- results-table:end -->

More prose, kept byte for byte.
"""


# A summary CSV as the study wrote it before failures and outliers were counted apart (the
# committed media/study_summary.csv's columns): n_failed counts batch 128's outlier.
OLD_CSV = """batch_size,n,n_failed,n_collapsed,n_diverged,n_outlier,median,median_lo,median_hi,q1,q3,mean,\
mean_ci95,sd,last3_mean,last3_median,final_epoch,best_epoch,best_epoch_median,reference
90,10,0,0,0,0,0.9723,0.9698,0.9744,0.971175,0.9741,0.97167,0.0025,0.0035,0.96713,0.9682,15,15.0,0.9723,0.9745
128,10,1,0,0,1,0.9719,0.9684,0.9736,0.9693,0.973375,0.96813,0.0078,0.011,0.96827,0.96812,15,15.0,0.9719,0.9711
"""


def readme_table(summary_csv: Path) -> str:
    """The README's results table from the summary CSV, as ``report.readme_blocks`` makes it."""
    return tables.markdown_table(report.read_summary(summary_csv))


@pytest.fixture
def summary_csv(tmp_path) -> Path:
    summ = stats.summary(make_history({8: B8, 128: B128, 200: [97.0, 97.2]}, epochs=15))
    return report.write_csv(summ, tmp_path / "study_summary.csv")


def test_summary_csv_round_trip_with_reference(summary_csv):
    s = report.read_summary(summary_csv)
    assert s["batch_size"].tolist() == [8, 128, 200]
    assert s["reference"].iloc[:2].tolist() == [0.9148, 0.9711] and np.isnan(s["reference"].iloc[2])
    assert s["reference_headline"].tolist() == [0.9764] * 3
    assert s.loc[0, "median"] == pytest.approx(np.median(B8) / 100, abs=1e-6)
    assert (s.loc[0, "n_failed"], s.loc[0, "n_outlier"], s.loc[0, "n"]) == (0, 2, 20)
    assert not list(summary_csv.parent.glob("*.tmp"))


def test_readme_table(summary_csv):
    table = readme_table(summary_csv)
    lines = table.splitlines()
    assert lines[0].startswith("| batch size | median [q1, q3] (%) |")
    assert lines[0].endswith("| failed seeds / n | outliers | reference (%, 1 seed) |")
    med, q1, q3 = np.median(B8), np.quantile(B8, 0.25), np.quantile(B8, 0.75)
    assert lines[2].startswith(f"| 8 | {med:.2f} [{q1:.2f}, {q3:.2f}] |")
    assert lines[2].endswith("| 0 / 20 | 2 | 91.48 |")  # two outliers, none failed
    assert lines[4].endswith("| 0 / 2 | 0 |  |")  # batch 200: no reference value
    assert len(lines) == 2 + 3  # header, rule, one row per batch size: nothing else
    assert readme_table(summary_csv) == table  # same CSV, same text


def test_an_old_summary_csv_reads_with_failures_and_outliers_apart(tmp_path):
    old = tmp_path / "study_summary.csv"
    old.write_text(OLD_CSV)
    s = report.read_summary(old)
    assert s["n_failed"].tolist() == [0, 0] and s["n_outlier"].tolist() == [0, 1]
    lines = readme_table(old).splitlines()
    assert lines[0].endswith("| failed seeds / n | outliers | reference (%, 1 seed) |")
    assert (
        lines[2] == "| 90 | 97.23 [97.12, 97.41] | 96.98–97.44 | 97.17 ± 0.25 | 96.71 | 0 / 10 | 0 | 97.45 |"
    )
    assert lines[3].endswith("| 0 / 10 | 1 | 97.11 |")  # batch 128's outlier is not a failure


def test_update_readme_round_trip(summary_csv, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(README)
    assert readme_mismatches(readme, summary_csv)
    report.update_readme(readme, {"results-table": readme_table(summary_csv)})
    text = readme.read_text()
    assert text.startswith("# A project\n\nSome prose.\n\n<!-- results-table:start -->\n| batch size")
    assert text.endswith("<!-- results-table:end -->\n\nMore prose, kept byte for byte.\n")
    assert "(stale)" not in text
    assert readme_mismatches(readme, summary_csv) == []
    report.update_readme(readme, {"results-table": readme_table(summary_csv)})
    assert readme.read_text() == text  # idempotent
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_a_changed_summary_is_a_mismatch(summary_csv, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(README)
    report.update_readme(readme, {"results-table": readme_table(summary_csv)})
    s = pd.read_csv(summary_csv)
    s.loc[1, "median"] += 0.001  # batch 128, 0.1 points
    s.to_csv(summary_csv, index=False)
    (problem,) = readme_mismatches(readme, summary_csv)
    assert problem.startswith("results-table line 4: README has '| 128 |")


def test_missing_markers(summary_csv, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# no markers\n")
    with pytest.raises(ValueError, match="results-table:start"):
        report.update_readme(readme, {"results-table": "| x |"})
    assert readme.read_text() == "# no markers\n"
    assert "results-table:start" in readme_mismatches(readme, summary_csv)[0]


def test_committed_readme_agrees_with_the_committed_numbers():
    # Every generated block whose CSV is committed: the table (study_summary.csv), the findings
    # (with study_pairs.csv) and the dead units (study_dead_units.csv).
    media, readme = ROOT / "media", ROOT / "README.md"
    assert readme_mismatches(readme, media) == []
    text = readme.read_text(encoding="utf-8")
    for name in report.BLOCKS:
        assert all(m in text for m in report.markers(name)), name


STUDY_README = """# A project

<!-- results-table:start -->
(stale)
<!-- results-table:end -->

Prose.

<!-- results-findings:start -->
- 91.65% [89.23, 92.70], hand-written
<!-- results-findings:end -->

<!-- dead-units:start -->
(stale)
<!-- dead-units:end -->
"""


def study_csvs(folder: Path, finals: dict) -> Path:
    df = make_history(finals, epochs=15)
    report.write_study(folder, stats.summary(df), compare.pairwise(df), stats.dead_units(df))
    return folder


def test_every_block_of_the_study_text_is_generated_from_the_csvs(tmp_path):
    media = study_csvs(tmp_path, {8: [*B8, 10.1], 90: B128, 128: [x - 0.5 for x in B128]})
    # The study's files and blocks: all but the science's, which make publish-science writes.
    study_files = [f for k, f in report.FILES.items() if k != "science"]
    assert sorted(p.name for p in media.iterdir()) == sorted(study_files)
    readme = tmp_path / "README.md"
    readme.write_text(STUDY_README)
    blocks = report.readme_blocks(media)
    assert list(blocks) == [b for b in report.BLOCKS if b != "science"]
    report.update_readme(readme, blocks)
    text = readme.read_text()
    assert "(stale)" not in text and "hand-written" not in text and "\nProse.\n" in text
    assert readme_mismatches(readme, media) == []
    findings_block = text.split("<!-- results-findings:start -->")[1].split("<!-- results-findings:end -->")[
        0
    ]
    assert "- Highest median final test accuracy: batch 90, median 97.15%" in findings_block
    assert "Holm-adjusted over the 3 pairs" in findings_block
    assert all(len(line) <= report.WIDTH for line in findings_block.splitlines())
    assert "- Dead units in hidden layer 1:" in text


def test_a_rerun_within_the_intervals_rewrites_the_prose_with_it(tmp_path):
    # The issue's M2: a rerun moved batch 8's median and its outliers; the generated text follows,
    # and no hand-written number is left to contradict it.
    first = study_csvs(tmp_path / "a", {8: [*B8, 10.1], 90: B128})
    again = study_csvs(tmp_path / "b", {8: [*B8[:-1], 80.0, 10.1], 90: B128})
    readme = tmp_path / "README.md"
    readme.write_text(STUDY_README)
    report.update_readme(readme, report.readme_blocks(first))
    assert readme_mismatches(readme, again)  # the old text no longer matches
    report.update_readme(readme, report.readme_blocks(again))
    assert readme_mismatches(readme, again) == [] and readme_mismatches(readme, first)


def test_the_committed_readmes_setup_sentence_matches_the_committed_summary():
    # The one hand-written sentence with numbers in the Results section, checked against the CSV.
    s = report.read_summary(ROOT / "media" / "study_summary.csv").set_index("batch_size")
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "ten seeds, sixty at batch 8" in text
    assert s.loc[8, "n"] == 60 and (s.drop(index=8)["n"] == 10).all()
    assert (s["final_epoch"] == 15).all() and list(s.index) == [8, 16, 32, 48, 64, 90, 128, 150]
    # "its heavy tail needs sixty seeds to pin its median within ±1 point"
    assert s.loc[8, "median_hi"] - s.loc[8, "median_lo"] <= 0.02
    # "Holm-adjusted over all 28 pairs"
    assert "Holm-adjusted over all 28 pairs" in text and len(s) * (len(s) - 1) // 2 == 28
    pairs = ROOT / "media" / report.FILES["pairs"]
    assert not pairs.is_file() or len(pd.read_csv(pairs)) == 28
