"""The committed summary CSV and the README's results table generated from it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_stats import B8, B128, make_history

from mlpmnist.analysis import stats, tables
from mlpmnist.workbench import report

ROOT = Path(__file__).resolve().parents[1]
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


@pytest.fixture
def summary_csv(tmp_path) -> Path:
    summ = stats.summary(make_history({8: B8, 128: B128, 200: [97.0, 97.2]}, epochs=15))
    return report.write_summary(summ, tmp_path / "study_summary.csv")


def test_summary_csv_round_trip_with_reference(summary_csv):
    s = report.read_summary(summary_csv)
    assert s["batch_size"].tolist() == [8, 128, 200]
    assert s["reference"].iloc[:2].tolist() == [0.9148, 0.9711] and np.isnan(s["reference"].iloc[2])
    assert s["reference_headline"].tolist() == [0.9764] * 3
    assert s.loc[0, "median"] == pytest.approx(np.median(B8) / 100, abs=1e-6)
    assert (s.loc[0, "n_failed"], s.loc[0, "n_outlier"], s.loc[0, "n"]) == (0, 2, 20)
    assert not list(summary_csv.parent.glob("*.tmp"))


def test_readme_table(summary_csv):
    table = report.readme_table(summary_csv)
    lines = table.splitlines()
    assert lines[0].startswith("| batch size | median [q1, q3] (%) |")
    assert lines[0].endswith("| failed seeds / n | outliers | reference (%, 1 seed) |")
    med, q1, q3 = np.median(B8), np.quantile(B8, 0.25), np.quantile(B8, 0.75)
    assert lines[2].startswith(f"| 8 | {med:.2f} [{q1:.2f}, {q3:.2f}] |")
    assert lines[2].endswith("| 0 / 20 | 2 | 91.48 |")  # two outliers, none failed
    assert lines[4].endswith("| 0 / 2 | 0 |  |")  # batch 200: no reference value
    assert len(lines) == 2 + 3  # header, rule, one row per batch size: nothing else
    assert report.readme_table(summary_csv) == table  # same CSV, same text


def test_readme_table_is_the_summary_tables_markdown(summary_csv):
    assert report.readme_table(summary_csv) == tables.markdown_table(report.read_summary(summary_csv))


def test_an_old_summary_csv_reads_with_failures_and_outliers_apart(tmp_path):
    old = tmp_path / "study_summary.csv"
    old.write_text(OLD_CSV)
    s = report.read_summary(old)
    assert s["n_failed"].tolist() == [0, 0] and s["n_outlier"].tolist() == [0, 1]
    lines = report.readme_table(old).splitlines()
    assert lines[0].endswith("| failed seeds / n | outliers | reference (%, 1 seed) |")
    assert (
        lines[2] == "| 90 | 97.23 [97.12, 97.41] | 96.98–97.44 | 97.17 ± 0.25 | 96.71 | 0 / 10 | 0 | 97.45 |"
    )
    assert lines[3].endswith("| 0 / 10 | 1 | 97.11 |")  # batch 128's outlier is not a failure


def test_update_readme_round_trip(summary_csv, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(README)
    assert not report.readme_agrees(readme, summary_csv)
    report.update_readme(readme, report.readme_table(summary_csv))
    text = readme.read_text()
    assert text.startswith("# A project\n\nSome prose.\n\n<!-- results-table:start -->\n| batch size")
    assert text.endswith("<!-- results-table:end -->\n\nMore prose, kept byte for byte.\n")
    assert "(stale)" not in text
    assert report.readme_agrees(readme, summary_csv) and report.readme_mismatches(readme, summary_csv) == []
    report.update_readme(readme, report.readme_table(summary_csv))
    assert readme.read_text() == text  # idempotent
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_a_changed_summary_is_a_mismatch(summary_csv, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(README)
    report.update_readme(readme, report.readme_table(summary_csv))
    s = pd.read_csv(summary_csv)
    s.loc[1, "median"] += 0.001  # batch 128, 0.1 points
    s.to_csv(summary_csv, index=False)
    (problem,) = report.readme_mismatches(readme, summary_csv)
    assert problem.startswith("line 4: README has '| 128 |")


def test_missing_markers(summary_csv, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# no markers\n")
    with pytest.raises(ValueError, match="results-table:start"):
        report.update_readme(readme, "| x |")
    assert readme.read_text() == "# no markers\n"
    assert "results-table:start" in report.readme_mismatches(readme, summary_csv)[0]


def test_committed_readme_agrees_with_the_committed_summary():
    csv, readme = ROOT / report.SUMMARY_CSV, ROOT / "README.md"
    if not csv.is_file() or report.START not in readme.read_text(encoding="utf-8"):
        pytest.skip(f"{report.SUMMARY_CSV} or the README's table markers are not committed yet")
    assert report.readme_mismatches(readme, csv) == []
