"""The committed report: at most 10 pages, and its tables are exactly what the records give."""

import math
import shutil

import pandas as pd
import pytest

from helpers.evidence import analysis as A
from helpers.study.records import RUNS_DIR
from helpers.evidence.report import MAX_PAGES, REPORT_DIR, page_count
from helpers.evidence.report_artifacts import study_inputs, write_all


def test_report_pdf_is_committed_and_within_the_page_limit():
    pdf = REPORT_DIR / "report.pdf"
    assert pdf.is_file(), "report/report.pdf is missing: run `make report`"
    assert 1 <= page_count(pdf) <= MAX_PAGES


GENERATED = ("macros.tex", "definition.tex", "time_to_target.tex", "density.tex",
             "scenario_standard.tex", "scenario_l2.tex", "scenario_sparse60.tex", "variance.tex",
             *(f"members_{f}.tex" for f in ("sgd", "momentum", "noise_reduction", "second_order")),
             *(f"fig_{n}.tex" for n in ("family_sgd", "family_momentum", "family_noise_reduction",
                                        "family_second_order", "differences", "batch_size", "accuracy_vs_density", "variance")),
             "readme_results.md", "readme_protocol.md")


def test_generated_tables_match_the_committed_records(tmp_path):
    """Regenerated from outputs/runs (protocol v2 records only; none, some or all of the study),
    every table, macro and figure snippet equals the committed one."""
    inputs = study_inputs(RUNS_DIR)
    write_all(inputs.frame, tmp_path, inputs.records, root=RUNS_DIR, draw=False, state=inputs.state)
    for name in GENERATED:
        committed = REPORT_DIR / "tables" / name
        assert committed.read_text() == (tmp_path / "tables" / name).read_text(), \
            f"report/tables/{name} is stale: rerun `make report`"


def test_pieces_without_records_say_what_is_not_run(tmp_path):
    """From an empty runs folder: every scenario table, answer and figure says "not yet run" and
    which definition rows are pending; the status line counts the definition's runs; nothing is drawn."""
    from helpers.evidence.report_tables import SCENARIO_ROWS
    from helpers.evidence.report_status import plan_state, progress
    runs = tmp_path / "runs"
    runs.mkdir()
    out = write_all(pd.DataFrame(), tmp_path / "report", pd.DataFrame(), root=runs)
    tables = tmp_path / "report" / "tables"
    planned = progress(plan_state(runs))["planned"]
    assert out["macros"]["StatusLine"].startswith(f"0 of the {planned.sum():,}".replace(",", "{,}"))
    for scenario, rows in SCENARIO_ROWS.items():
        text = (tables / f"scenario_{scenario}.tex").read_text()
        assert "\\NotRun{} (every method)" in text
        for row in rows:
            assert f"row {row}: 0 of {planned[row]:,}".replace(",", "{,}") in text
    macros = (tables / "macros.tex").read_text()
    assert "\\newcommand{\\AnswerStandard}{standard: \\NotRun{} (row standard: 0 of" in macros
    assert "\\newcommand{\\BestSparseMethod}{\\NotRun{}}" in macros
    for snippet in tables.glob("fig_*.tex"):
        assert "\\NotRun{}" in snippet.read_text() and "includegraphics" not in snippet.read_text()
    assert not list((tmp_path / "report" / "figures").glob("*.pdf"))


def test_superseded_runs_never_enter_the_tables():
    """Only the runs the definition plans (done or failed) are read; runs a cut no longer asks
    for, or of an older update rule, stay on disk and out of every table."""
    from types import SimpleNamespace
    from helpers.evidence.report_status import planned_records
    records = pd.DataFrame({"run_id": ["a", "a", "b", "c"], "epoch": [1, 2, 1, 1]})

    def run(rid):
        return SimpleNamespace(config=SimpleNamespace(run_id=rid))
    state = SimpleNamespace(done=[run("a")], failed=[run("c")])
    assert list(planned_records(records, state)["run_id"]) == ["a", "a", "c"]
    assert planned_records(records, None) is records  # no planner: nothing to judge by


def test_pieces_build_without_the_planner(tmp_path, monkeypatch):
    """Where the planner cannot read the study, every macro the report uses is still defined."""
    import re
    from helpers.evidence import report_artifacts as R
    monkeypatch.setattr(R, "plan_state", lambda root, profile: None)
    monkeypatch.setattr(R, "protocol_macros", lambda profile="full": {})
    runs = tmp_path / "runs"
    runs.mkdir()
    R.write_all(pd.DataFrame(), tmp_path, pd.DataFrame(), root=runs, draw=False)
    defined = set(re.findall(r"\\newcommand\{\\(\w+)\}", (tmp_path / "tables" / "macros.tex").read_text()))
    used = set(re.findall(r"\\([A-Z]\w+)", (REPORT_DIR / "report.tex").read_text() +
                          (REPORT_DIR / "conclusion.tex").read_text()))
    assert used - defined == set()
    assert (tmp_path / "tables" / "definition.tex").is_file()


def test_main_tables_keep_the_main_recipe_only():
    """The other studies' runs (another batch size, unit pixels, another horizon) stay out of the
    scenario tables and the hold-out ranking."""
    from helpers.evidence.report_artifacts import main_study
    base = dict(epoch=10.0, status="finished", scenario="standard", tag="", schedule="cosine", batch_size="64",
                scaling="standardize", planned_epochs=10, eval_split="test", train_fraction=1.0)
    records = pd.DataFrame([dict(base, run_id="main", optimizer="sgd"),
                            dict(base, run_id="tune", optimizer="sgd", tag="tune", eval_split="val"),
                            dict(base, run_id="b8", optimizer="sgd", batch_size="8"),
                            dict(base, run_id="unit", optimizer="sgd", scaling="unit"),
                            dict(base, run_id="h3", optimizer="adam", planned_epochs=3),
                            dict(base, run_id="basic", optimizer="sgd_basic", batch_size="1", planned_epochs=1),
                            dict(base, run_id="starter", optimizer="sgd", tag="starter", schedule="constant"),
                            dict(base, run_id="kfac256", optimizer="kfac", batch_size="256")])  # a tuned batch
    assert sorted(main_study(records)["run_id"]) == ["basic", "kfac256", "main", "tune"]


def test_main_tables_leave_out_the_weight_decay_study_by_its_rows():
    """The weight decay study's runs are l2 runs at the main recipe: only the planner knows they
    belong to another study, and with its state they stay out (else final_results would pick the
    l2 configuration of adam by its test accuracy among several)."""
    from types import SimpleNamespace
    from helpers.evidence.report_artifacts import main_study
    base = dict(epoch=10.0, status="finished", scenario="l2", tag="", schedule="cosine", batch_size="64",
                scaling="standardize", planned_epochs=10, eval_split="test", train_fraction=1.0, optimizer="adam")
    records = pd.DataFrame([dict(base, run_id="l2"), dict(base, run_id="wd"), dict(base, run_id="unplanned")])

    def planned(rid, study):
        return SimpleNamespace(config=SimpleNamespace(run_id=rid), study=study)
    state = SimpleNamespace(done=[planned("l2", "main"), planned("wd", "weight_decay")], failed=[])
    assert sorted(main_study(records)["run_id"]) == ["l2", "unplanned", "wd"]  # the recipe alone cannot tell
    assert list(main_study(records, state=state)["run_id"]) == ["l2"]


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
    from helpers.evidence import report_macros as M
    from helpers.evidence import report_tables as T
    from helpers.evidence.latex import tex
    records = _study([("adam", 0, 90.0, 0.30), ("adam", 1, 90.2, 0.29), ("adam", 2, 90.1, 0.31),
                      ("sgd", 0, 91.0, 0.35), ("sgd", 1, 91.4, 0.36), ("sgd", 2, 90.9, 0.34),  # best on test
                      ("svrg", 0, 80.0, 0.60), ("svrg", 1, 80.5, 0.61), ("svrg", 2, float("nan"), float("nan"),
                                                                         "diverged")],
                     [("adam", 89.0), ("sgd", 88.0), ("svrg", 85.0)])
    final = A.final_frame(frame=records)
    results = A.final_results(final)
    comps = R.comparisons(final, records, predictions=lambda run_id: None)
    best = T.indicated_best(results, comps)
    assert best.loc["standard", "method"] == "adam" and best.loc["standard", "chosen_on"] == "hold-out"
    table = T.comparison_tex(comps["standard"])
    assert "adam & 3 & -- & best" in table and "& yes &" in table
    assert "svrg & 2 & " in table  # the diverged seed is not paired
    assert "sgd & 3 & +1.00 [" in table  # seed-matched: (1.0 + 1.2 + 0.8) / 3
    final_tex = T.final_table_tex(results, "standard")
    assert "svrg & noise\\_reduction & 80.25 $\\pm$ 0.35" in final_tex and "& 2/1/0 &" in final_tex
    text = M.answer(comps["standard"], best.loc["standard"])
    assert text.startswith("In the standard scenario the hold-out indicates adam, at 90.10% test accuracy")
    grouped = M.answer({**comps["standard"], "group_accuracy": [("adam", "projection"), ("sgd", "projection"),
                                                                 ("svrg", "gradual")],
                        "group_loss": [("adam", "projection"), ("svrg", "gradual"), ("nadam", "projection")]},
                       best.loc["standard"])
    assert grouped.endswith("Not separable from it on accuracy and on test loss: 1 method (svrg (gradual)); "
                            "on accuracy only: 1 (sgd); on test loss only: 1 (nadam).")
    values = M.macros(results, A.time_to_target(A.study_frame(frame=records)), A.study_frame(frame=records),
                      comps=comps)
    assert values["BestStandardMethod"] == "adam" and values["BestStandardRuns"] == "3/0/0"
    assert "CountingRule" in values and values["AnswerStandard"] == tex(text)
    pending = M.answer({"scenario": "l2", "holdout_best": "shampoo", "reference": None}, None)
    assert pending == "l2: the hold-out indicates shampoo; its final runs are not done yet."
    assert M.answer({"scenario": "l2", "holdout_best": None, "reference": None}, None).endswith("indicated as best.")


def test_methods_the_test_set_prefers_to_the_hold_out_s_choice_are_named():
    from helpers.evidence import report_macros as M
    acc = pd.DataFrame({"method": ["a", "b", "c"], "difference": [0.5, -0.4, 0.1],
                        "verdict": ["separable", "separable", "not separable"]})
    loss = pd.DataFrame({"method": ["a", "b", "c"], "difference": [-0.02, 0.03, -0.045],
                         "verdict": ["separable", "separable", "separable"]})
    comp = {"reference": ("shampoo", "projection"), "accuracy": acc, "loss": loss}
    assert M.better_on_test(comp) == ("Separable from shampoo on the test set in their favour: with higher "
                                      "test accuracy, 1: a (+0.50 points); with lower test loss, 2: "
                                      "c (-0.045), a (-0.020).")
    assert M.better_on_test({"reference": None}) == ""


def test_family_sentence_sets_each_member_against_its_base_and_names_who_took_few_steps():
    from helpers.evidence import report_macros as M
    rows = pd.DataFrame({
        "method": ["sgd", "gd", "sgd_basic", "heavy_ball"], "family": ["sgd", "sgd", "sgd", "momentum"],
        "test_acc_mean": [90.0, 30.0, 89.8, 95.0], "test_acc_std": [0.2, 5.0, 0.1, 0.1],
        "step": [9375, 10, 60000, 9375], "diverged": [0, 1, 0, 0], "failed": [0, 0, 0, 0]})
    text = M.family_sentence(rows, "sgd")
    # pooled with sgd's 0.2: sgd_basic 0.2 behind, within 2 x 0.16; gd 60 behind, beyond 2 x 3.5
    assert text.startswith("Standard scenario, mean test accuracy against sgd: sgd\\_basic $-$0.20, gd $-$60.00 points "
                           "(beyond the noise: gd; the others within) (noise: 2 pooled seed standard deviations).")
    assert "At most half the steps of sgd's 9{,}375 within the budget: gd 10." in text
    assert "gd 1 diverged, 0 failed" in text and "heavy" not in text
    assert M.contrast_clause(rows, "sgd", ("sgd_basic",)).endswith("within the noise")
    assert M.contrast_clause(rows, "adam", ("sgd",)) is None  # no runs of the reference


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
    quoted = r"""\begin{document}
    The assignment asks for ``strong results with fewer computations''. Fewer steps suffice.
    \end{document}"""
    assert [f for f in findings(quoted, macros) if "comparison" in f] == \
        ["comparison without a generated macro: 'Fewer steps suffice.'"]


def test_report_prose_has_no_typed_numbers_or_unbacked_comparisons():
    """Numbers and comparative sentences enter report.tex only through generated macros and tables
    (helpers.evidence.prose); the assignment's own facts are allowed."""
    from helpers.evidence.prose import findings, generated_macros
    macros = generated_macros(REPORT_DIR / "tables")
    found = []
    for path in sorted(REPORT_DIR.glob("*.tex")):
        found += [f"{path.name}: {f}" for f in findings(path.read_text(), macros)]
    assert not found, "hand-written results in the report:\n" + "\n".join(found)


@pytest.mark.parametrize("block", ["results", "protocol"])
def test_readme_blocks_are_their_generated_sources(block):
    from helpers.evidence.prose import readme_block
    from helpers.runtime import ROOT
    source = REPORT_DIR / "tables" / f"readme_{block}.md"
    assert readme_block((ROOT / "README.md").read_text(), block) == source.read_text(), \
        f"README {block} block differs from report/tables/readme_{block}.md: rerun `make report`"


def test_readme_protocol_states_the_cut_study():
    """The README's protocol numbers are the definition's, cuts applied (the trial counts were
    typed before the cuts, and said 4 and 8 where the study runs 2 and 6)."""
    from helpers.evidence.readme_protocol import protocol_markdown
    from helpers.study import definition
    p = definition.get_profile("full")
    text = " ".join(protocol_markdown().split())
    assert f"then {p.qmc_trials} quasi-random trials" in text and f"`l2`: {p.l2_trials} quasi-random" in text
    assert "{,}" not in text and "\\" not in text and "$" not in text


def test_readme_benchmark_block_is_its_generated_source_from_a_clean_commit():
    from helpers.evidence.prose import readme_block
    from helpers.runtime import ROOT
    block = readme_block((ROOT / "README.md").read_text(), "bench")
    assert block == (ROOT / "outputs" / "benchmarks" / "README_table.md").read_text(), \
        "README bench block differs from outputs/benchmarks/README_table.md"
    assert "-dirty" not in block, "the benchmark table was measured on uncommitted code: rerun benchmarks"


def test_protocol_constants_come_from_the_study_definition():
    from helpers.evidence.report_macros import protocol_macros
    definition = pytest.importorskip("helpers.study.definition")
    profile = definition.get_profile("full")
    values = protocol_macros()
    assert values["ProtocolGridPoints"] == str(profile.grid_points)
    assert values["ProtocolLtwoTrials"] == str(profile.l2_trials)
    assert values["ProtocolTuneImages"] == f"{60_000 - profile.val_size:,}".replace(",", "{,}")
    low, high = definition.WEIGHT_DECAY["coupled"]
    assert values["ProtocolWdCoupled"] == f"$10^{{{round(math.log10(low))}}}$ to $10^{{{round(math.log10(high))}}}$"


def test_sparse_table_keeps_each_methods_holdout_strategy():
    from helpers.evidence.report_tables import final_table_tex
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
    table = final_table_tex(results, "sparse60", strategies=A.holdout_strategies(tuning))
    assert "second\\_order & 88.10" in table and "gradual" not in table and "adam & momentum" in table


def test_time_to_target_reads_the_horizon_studys_runs_where_it_ran():
    """A method the horizon study ran is timed on those runs (the horizon chosen on the hold-out),
    the others on their main runs: one configuration per method, never the cheaper on the test set."""
    from types import SimpleNamespace
    from helpers.evidence import analysis as A
    from helpers.evidence.report_artifacts import time_to_target_frame
    base = dict(status="finished", scenario="standard", tag="", schedule="cosine", batch_size="64", seed=0,
                sparsity_strategy="projection",
                scaling="standardize", eval_split="test", train_fraction=1.0, grad_evals=0, wall_s=1.0)
    rows = []
    for rid, optimizer, epochs, hit_epoch in (("n10", "nesterov", 10, 2.0), ("n4", "nesterov", 4, 3.0),
                                              ("a10", "adam", 10, 5.0)):
        for epoch in (1.0, 2.0, 3.0, 5.0):
            rows.append(dict(base, run_id=rid, optimizer=optimizer, planned_epochs=epochs, epoch=epoch,
                             hparams="{}", oracle_evals=60_000 * epoch, test_acc=90.0 if epoch >= hit_epoch else 80.0))
    frame = A.study_frame(frame=pd.DataFrame(rows))

    def planned(rid, row):
        return SimpleNamespace(config=SimpleNamespace(run_id=rid), row=row, study="main" if row != "horizon" else "t")
    state = SimpleNamespace(done=[planned("n10", "standard"), planned("a10", "standard"), planned("n4", "horizon")],
                            failed=[])
    chosen = time_to_target_frame(frame, state=state)
    assert sorted(chosen["run_id"].unique()) == ["a10", "n4"]
    ttt = A.time_to_target(chosen).set_index("method")
    assert ttt.loc["nesterov", "epoch"] == 3.0  # the main run reached it sooner, on the test set: not chosen
    assert ttt.loc["adam", "epoch"] == 5.0


@pytest.mark.skipif(shutil.which("latexmk") is None, reason="no latexmk (make setup installs it)")
def test_the_report_of_the_complete_study_fits_its_pages(tmp_path):
    """The committed records with every run still planned filled by made-up records: the report
    the finished study will produce already fits the page limit (helpers.evidence.preview)."""
    from helpers.evidence.preview import build
    from helpers.evidence.report import MAX_PAGES
    from helpers.study.planner import study_plan
    pdf, pages = build(tmp_path / "preview", RUNS_DIR, images=False)
    state = study_plan(None, "full", tmp_path / "preview" / "runs")
    assert not state.runnable and not state.blocked  # the study is complete there
    assert pages <= MAX_PAGES, f"the complete study's report has {pages} pages: shorten report.tex or its tables"


def test_shift_sentence_names_the_methods_a_scenario_moves_beyond_the_noise():
    from helpers.evidence import report_macros as M
    base = pd.DataFrame({"method": ["adam", "sgd", "gd"], "test_acc_mean": [90.0, 89.0, 30.0],
                         "test_acc_std": [0.1, 0.1, 5.0]})
    l2 = pd.DataFrame({"method": ["adam", "sgd", "gd"], "test_acc_mean": [90.9, 88.0, 31.0],
                       "test_acc_std": [0.1, 0.1, 5.0], "sparsity_strategy": "projection"})
    text = M.shift_sentence(l2, base, "l2")
    assert text == ("Against each method's standard result, l2 moves the mean test accuracy beyond the noise for "
                    "2 of 3 methods (up: adam +0.90; down: sgd $-$1.00 points); within it for the other 1.")
    assert M.shift_sentence(l2.iloc[:0], base, "l2") == ""


def test_the_l2_decays_chosen_are_summarised_by_kind():
    from types import SimpleNamespace
    from helpers.evidence.report_macros import decay_choices_sentence
    choice = lambda wd: SimpleNamespace(hparams={"lr": 0.1, "weight_decay": wd})  # noqa: E731
    state = SimpleNamespace(choices={("l2", "sgd", "projection"): choice(1e-5), ("l2", "adam", "projection"): choice(1e-3),
                                     ("l2", "nesterov", "projection"): choice(2e-4), ("l2", "adamw", "projection"): choice(0.05),
                                     ("standard", "sgd", "projection"): choice(9.0), ("l2", "gd", "projection"): None})
    assert decay_choices_sentence(state) == (
        "The l2 trials chose coupled decays from $1 \\times 10^{-5}$ (sgd) to $1 \\times 10^{-3}$ (adam), median "
        "$2 \\times 10^{-4}$ over 3 methods; decoupled $5 \\times 10^{-2}$ (adamw).")
    assert decay_choices_sentence(None) == ""
