"""The committed report: at most 10 pages, and its tables are exactly what the records give."""

import math

import pandas as pd
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
    write_all(frame, tmp_path, records, draw=False)
    for name in ("macros.tex", "final_standard.tex", "final_l2.tex", "final_sparse60.tex",
                 "time_to_target.tex", "targets.tex", "density.tex", "final_families.tex",
                 "families_by_scenario.tex", "comparison_standard.tex", "comparison_l2.tex",
                 "comparison_sparse60.tex", "readme_results.md"):
        committed = REPORT_DIR / "tables" / name
        assert committed.read_text() == (tmp_path / "tables" / name).read_text(), \
            f"report/tables/{name} is stale: rerun `make report`"


def _study(finals, tuning):
    """Final records (method, seed, acc, loss[, status]) and hold-out records (method, val_acc), standard."""
    from helpers.optimizers import get_spec
    rows = [dict(run_id=f"{m}-{seed}", epoch=10.0, test_acc=acc, test_loss=loss, test_starter_loss=loss / 64,
                 seed=seed, grad_evals=600_000, hvp_evals=0, oracle_evals=600_000, wall_s=1.0,
                 diverged=bool(st and st[0] == "diverged"), status=st[0] if st else "finished", optimizer=m,
                 family=get_spec(m).family, scenario="standard", sparsity_strategy="projection", tag="",
                 eval_split="test", train_fraction=1.0, schedule="cosine", batch_size="64", planned_epochs=10,
                 scaling="standardize", hparams='{"lr": 0.1}', val_acc=float("nan"), within_budget=True)
            for m, seed, acc, loss, *st in finals]
    rows += [dict(run_id=f"tune-{m}", epoch=10.0, val_acc=v, status="finished", optimizer=m, scenario="standard",
                  tag="tune", eval_split="val", train_fraction=1.0) for m, v in tuning]
    return pd.DataFrame(rows)


def test_report_pieces_name_the_holdout_best_and_count_failures(tmp_path):
    from helpers.evidence import report_artifacts as R
    records = _study([("adam", 0, 90.0, 0.30), ("adam", 1, 90.2, 0.29), ("adam", 2, 90.1, 0.31),
                      ("sgd", 0, 91.0, 0.35), ("sgd", 1, 91.4, 0.36), ("sgd", 2, 90.9, 0.34),  # best on test
                      ("svrg", 0, 80.0, 0.60), ("svrg", 1, 80.5, 0.61), ("svrg", 2, float("nan"), float("nan"),
                                                                         "diverged")],
                     [("adam", 89.0), ("sgd", 88.0), ("svrg", 85.0)])
    final = A.final_frame(frame=records)
    results = A.final_results(final)
    comps = R.comparisons(final, records, predictions=lambda run_id: None)
    best = R.indicated_best(results, comps)
    assert best.loc["standard", "method"] == "adam" and best.loc["standard", "chosen_on"] == "hold-out"
    table = R.comparison_tex(comps["standard"])
    assert "adam & 3 & -- & best" in table and "& yes &" in table
    assert "svrg & 2 & " in table  # the diverged seed is not paired
    assert "sgd & 3 & +1.00 [" in table  # seed-matched: (1.0 + 1.2 + 0.8) / 3
    final_tex = R.final_table_tex(results, "standard")
    assert "svrg & noise\\_reduction & 80.25 $\\pm$ 0.35" in final_tex and "& 2/1/0 &" in final_tex
    text = R.answer(comps["standard"], best.loc["standard"])
    assert text.startswith("In the standard scenario the hold-out indicates adam, at 90.10% test accuracy")
    values = R.macros(results, A.time_to_target(A.study_frame(frame=records)), A.study_frame(frame=records),
                      comps=comps)
    assert values["BestStandardMethod"] == "adam" and values["BestStandardRuns"] == "3/0/0"
    assert "CountingRule" in values and values["AnswerStandard"] == R._tex(text)


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


def test_protocol_constants_come_from_the_study_definition():
    from helpers.evidence.report_artifacts import protocol_macros
    definition = pytest.importorskip("helpers.study.definition")
    profile = definition.get_profile("full")
    values = protocol_macros()
    assert values["ProtocolGridPoints"] == str(profile.grid_points)
    assert values["ProtocolLtwoTrials"] == str(profile.l2_trials)
    assert values["ProtocolTuneImages"] == f"{60_000 - profile.val_size:,}".replace(",", "{,}")
    low, high = definition.WEIGHT_DECAY["coupled"]
    assert values["ProtocolWdCoupled"] == f"$10^{{{round(math.log10(low))}}}$ to $10^{{{round(math.log10(high))}}}$"


def test_sparse_table_keeps_each_methods_holdout_strategy():
    from helpers.evidence import report_artifacts as R
    records = _study([("shampoo", 0, 88.0, 0.3), ("shampoo", 1, 88.2, 0.3), ("adam", 0, 90.0, 0.3)], [])
    records = pd.concat([records, records.iloc[:2].assign(sparsity_strategy="gradual", test_acc=[90.5, 90.7],
                                                          run_id=["g0", "g1"])], ignore_index=True)
    records["scenario"] = "sparse60"
    tuning = pd.DataFrame([dict(run_id=f"t{i}", epoch=10.0, val_acc=v, status="finished", optimizer=o,
                                sparsity_strategy=st, scenario="sparse60", tag="tune", eval_split="val")
                           for i, (o, st, v) in enumerate([("shampoo", "projection", 89.0),
                                                           ("shampoo", "gradual", 88.0)])])
    assert A.holdout_strategies(tuning) == {"shampoo": "projection"}  # not gradual, the better on test
    results = A.final_results(A.final_frame(frame=records))
    table = R.final_table_tex(results, "sparse60", strategies=A.holdout_strategies(tuning))
    assert "second\\_order & 88.10" in table and "gradual" not in table and "adam & momentum" in table
