"""helpers.evidence.family: the members table, the conclusion and the set-up the family notebooks share."""
import math

import pandas as pd
import pytest

from helpers.evidence.family import conclusion, family_figures, family_setup, members_table, print_conclusion


def records(rows) -> pd.DataFrame:
    """Two records per run (epochs 0 and 1); ``rows``: (method, seed, status, final acc, final loss)."""
    out = []
    for i, (method, seed, status, acc, loss) in enumerate(rows):
        for epoch in (0, 1):
            out.append({"run_id": f"r{i}", "method": method, "optimizer": method, "seed": seed, "epoch": epoch,
                        "status": status, "test_acc": acc if epoch else 10.0, "test_loss": loss if epoch else 2.3,
                        "test_starter_loss": 0.0, "grad_evals": 1000 * (epoch + 1), "hvp_evals": 0,
                        "oracle_evals": 1000 * (epoch + 1), "wall_s": 2.0 * (epoch + 1), "step": 10 * epoch})
    return pd.DataFrame(out)


FRAME = records([("adam", 0, "finished", 80.0, 0.6), ("adam", 1, "finished", 82.0, 0.5),
                 ("sgd", 0, "finished", 85.0, 0.45), ("sgd", 1, "diverged", math.nan, math.nan)])


def test_members_table_best_first_with_counts_and_spread():
    results, table = members_table(FRAME)
    assert list(table.index) == ["sgd", "adam"]
    assert table.loc["adam", "test acc (%)"] == "81.00 ± 1.41"
    assert table.loc["sgd", "test acc (%)"] == "85.00", "one finished seed: no spread"
    assert table.loc["adam", "test loss"] == "0.5500 ± 0.0707"
    assert (table.loc["sgd", "finished"], table.loc["sgd", "diverged"], table.loc["sgd", "failed"]) == (1, 1, 0)
    assert table.loc["adam", "oracle calls"] == "2,000"
    assert results.loc["adam", "test_acc_mean"] == pytest.approx(81.0)


def test_members_table_empty_without_records():
    results, table = members_table(FRAME.iloc[:0])
    assert results.empty and table.empty


def test_conclusion_names_best_reference_gap_and_lost_runs():
    results, _ = members_table(FRAME)
    lines = conclusion(results, "adam")
    assert lines[0] == "highest mean test accuracy: sgd (85.00%, 1 seed(s)); lowest test loss: sgd (0.4500)"
    assert lines[1] == "sgd vs the reference adam: +4.00 points (one seed: no noise estimate)"
    assert lines[2] == "sgd: 1 diverged, 0 failed run(s)"
    assert len(conclusion(results, "sgd")) == 2, "no gap line when the best is the reference"
    assert conclusion(pd.DataFrame(), "sgd") == ["no finished runs yet"]


def test_conclusion_puts_the_hold_out_first_and_the_seed_noise_beside_every_gap():
    frame = records([("adam", 0, "finished", 84.0, 0.6), ("adam", 1, "finished", 86.0, 0.5),
                     ("sgd", 0, "finished", 85.6, 0.45), ("sgd", 1, "finished", 85.4, 0.5),
                     ("nadam", 0, "finished", 80.0, 0.7), ("nadam", 1, "finished", 80.2, 0.7)])
    results, _ = members_table(frame)
    tuning = pd.DataFrame({"member": ["adam", "nadam", "nadam", "sgd"], "val_acc": [84.0, 86.0, 70.0, 85.0]})
    lines = conclusion(results, "adam", tuning)
    assert lines[0] == "first on the hold-out: nadam (86.00% on the hold-out); on the test set 80.10% over 2 seed(s)"
    assert lines[1].startswith("highest mean test accuracy: sgd (85.50%")
    # adam 85.00 +- 1.41 is within 2 x sqrt((1.41^2 + 0.14^2) / 2) = 2.01 of sgd; nadam 5.4 behind is not
    assert lines[2] == "within the seed noise of sgd (2 pooled standard deviations): adam"
    assert lines[3] == "sgd vs the reference adam: +0.50 points (within 2 pooled seed standard deviations, 2.01)"


def test_print_conclusion_states_scenario_and_sizes(capsys, tmp_path):
    fam = family_setup("momentum", "standard", "ci", ["adam"], "sgd", runs_dir=tmp_path)
    print_conclusion(members_table(FRAME)[0], fam, "standard", "adam")
    head = capsys.readouterr().out.splitlines()[0]
    assert head.startswith("standard, profile ci (") and "of the images):" in head


def test_family_setup_members_from_the_profile_and_reference_first(tmp_path):
    from helpers.study.definition import get_profile
    fam = family_setup("momentum", "standard", "ci", None, "sgd", runs_dir=tmp_path)
    assert fam.methods[0] == "sgd" and fam.methods[1:], fam.methods
    profile_methods = get_profile("ci").methods
    assert all(m in profile_methods for m in fam.methods[1:]) or len(fam.methods) == 2
    assert fam.root == tmp_path.resolve()
    with pytest.raises(ValueError, match="family"):
        family_setup("no_such_family", "standard", "ci", runs_dir=tmp_path)
    with pytest.raises(ValueError):
        family_setup("momentum", "standard", "ci", ["adamx"], runs_dir=tmp_path)


def test_family_figures_one_grid_per_axis():
    import matplotlib.pyplot as plt
    frame = FRAME.assign(train_loss=FRAME["test_loss"], family="momentum", scenario="standard")
    figures = family_figures(frame, "epoch", "oracle_evals")
    assert len(figures) == 2
    assert family_figures(frame.iloc[:0], "epoch") == []
    plt.close("all")
