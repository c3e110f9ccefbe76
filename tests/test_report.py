"""The committed report: at most 10 pages, and its tables are exactly what the records give."""

import pytest

from helpers.evidence import analysis as A
from helpers.study.records import RUNS_DIR, load_records
from helpers.evidence.report import MAX_PAGES, REPORT_DIR, page_count
from helpers.evidence.report_artifacts import write_all


def test_report_pdf_is_committed_and_within_the_page_limit():
    pdf = REPORT_DIR / "report.pdf"
    assert pdf.is_file(), "report/report.pdf is missing: run `make report`"
    assert 1 <= page_count(pdf) <= MAX_PAGES


def test_generated_tables_match_the_committed_records(tmp_path):
    records = load_records(RUNS_DIR)
    frame = A.study_frame(frame=records)
    if frame.empty:
        pytest.skip("no study records committed yet")
    write_all(frame, tmp_path, records)
    for name in ("macros.tex", "final_standard.tex", "final_l2.tex", "final_sparse60.tex",
                 "time_to_target.tex", "targets.tex", "density.tex", "final_families.tex",
                 "families_by_scenario.tex", "readme_results.md"):
        committed = REPORT_DIR / "tables" / name
        assert committed.read_text() == (tmp_path / "tables" / name).read_text(), \
            f"report/tables/{name} is stale: rerun `make report`"


def test_prose_checks_catch_typed_integers_and_unbacked_comparisons():
    from helpers.evidence.prose import findings
    macros = {"BestStandardMethod", "GroupStandardAcc"}
    typed = r"""\begin{document}
    K-FAC scores 89.87 and Shampoo 90.04. Among the curvature methods only Shampoo comes close.
    The study ran 328 runs over 3 seeds. Thinner budgets (30, 10, 5, 1\%) are separate scenarios.
    \end{document}"""
    found = findings(typed, macros)
    for number in ("89.87", "90.04", "328", "3", "30", "1"):
        assert f"typed number {number!r}" in found
    assert any("comes close" in f for f in found)
    clean = r"""\begin{document}
    The best method is \BestStandardMethod{}; not separable from it: \GroupStandardAcc.
    LeNet-5 on the official split (60{,}000 training, 10{,}000 test images), at most 60\% of the
    fc1+fc2 weights (30{,}720 + 10{,}080) nonzero in sparse60; the starter reaches 61.5\%.
    \includegraphics[width=0.6\textwidth]{figures/curves_standard.pdf} % 42 in a comment
    \end{document}"""
    assert findings(clean, macros) == []


def test_report_prose_has_no_typed_numbers_or_unbacked_comparisons():
    """Numbers and comparative sentences enter report.tex only through generated macros and tables
    (helpers.evidence.prose); the assignment's own facts are allowed."""
    from helpers.evidence.prose import findings, generated_macros
    macros = generated_macros(REPORT_DIR / "tables")
    found = []
    for name in ("report.tex", "conclusion.tex"):
        path = REPORT_DIR / name
        if path.is_file():
            found += [f"{name}: {f}" for f in findings(path.read_text(), macros)]
    assert not found, "hand-written results in the report:\n" + "\n".join(found)


def test_readme_results_block_is_its_generated_source():
    from helpers.evidence.prose import readme_block
    from helpers.runtime import ROOT
    source = REPORT_DIR / "tables" / "readme_results.md"
    assert readme_block((ROOT / "README.md").read_text(), "results") == source.read_text(), \
        "README results block differs from report/tables/readme_results.md: rerun `make report`"


def test_readme_benchmark_block_is_its_generated_source_from_a_clean_commit():
    from helpers.evidence.prose import readme_block
    from helpers.runtime import ROOT
    block = readme_block((ROOT / "README.md").read_text(), "bench")
    assert block == (ROOT / "outputs" / "benchmarks" / "README_table.md").read_text(), \
        "README bench block differs from outputs/benchmarks/README_table.md"
    assert "-dirty" not in block, "the benchmark table was measured on uncommitted code: rerun benchmarks"
