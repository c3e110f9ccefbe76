"""The thinner budgets' findings: the projection's start, the runs at chance, the report's sentence."""
import pandas as pd
import torch

from helpers.evidence.density import chance_runs, density_sentence, projection_support_at_init


def test_the_projection_from_the_default_initialisation_gives_a_small_budget_to_fc2_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    support = projection_support_at_init([0.3, 0.05], seeds=(0, 1)).set_index(["density", "seed"])
    assert torch.equal(torch.rand(3), expected)  # the global random state is left alone
    for seed in (0, 1):
        assert support.loc[(0.05, seed), "fc1_kept"] == 0 and support.loc[(0.05, seed), "fc2_kept"] == 2040
        assert support.loc[(0.3, seed), "fc1_kept"] > 1000 and support.loc[(0.3, seed), "fc2_kept"] > 1000
        assert support.loc[(0.3, seed), ["fc1_kept", "fc2_kept"]].sum() == 12240


def _finals(rows):
    return pd.DataFrame([{"run_id": f"r{i}", "scenario": sc, "sparsity_strategy": st, "epoch": 10.0,
                          "test_acc": acc, "seed": i % 3} for i, (sc, st, acc) in enumerate(rows)])


def test_chance_runs_counts_the_thinner_projection_runs_at_chance():
    finals = _finals([("sparse5", "projection", 10.0), ("sparse5", "projection", 84.0),
                      ("sparse10", "projection", 89.0), ("sparse60", "projection", 10.0),
                      ("sparse5", "gradual", 10.0)])
    table = chance_runs(finals).set_index("density")
    assert list(table.index) == [0.10, 0.05]  # sparse60 is the main scenario, not a thinner budget
    assert table.loc[0.05, "runs"] == 2 and table.loc[0.05, "at_chance"] == 1
    assert table.loc[0.10, "at_chance"] == 0


def _results(rows):
    return pd.DataFrame([{"method": m, "sparsity_strategy": st, "density": d, "test_acc_mean": acc}
                         for m, st, d, acc in rows])


def test_density_sentence_names_the_collapse_and_its_cause_only_where_the_start_keeps_no_fc1_weight():
    results = _results([("nesterov", "projection", 1.0, 90.5), ("nesterov", "projection", 0.3, 89.9),
                        ("kfac", "projection", 0.05, 34.7), ("nesterov", "projection", 0.05, 10.0),
                        ("nesterov", "projection", 0.01, 10.0), ("kfac", "projection", 0.01, 10.0),
                        ("nesterov", "gradual", 0.6, 90.0)])
    chance = pd.DataFrame({"density": [0.3, 0.05, 0.01], "runs": [6, 6, 6], "at_chance": [0, 5, 6]})
    support = pd.DataFrame({"density": [0.3, 0.05, 0.01], "seed": 0, "fc1_kept": [7388, 0, 0],
                            "fc2_kept": [4852, 2040, 408]})
    text = density_sentence(results, chance, support)
    assert "89.90\\% at 30\\% (nesterov), 34.70\\% at 5\\% (kfac) and chance at 1\\%" in text
    assert "5 of 6 final runs at 5\\% and 6 of 6 final runs at 1\\% end at chance" in text
    assert "keeps only fc2 weights at 5\\% and 1\\%" in text and "run at 60\\% only" in text
    support.loc[support["density"] == 0.05, "fc1_kept"] = 12
    assert "keeps only fc2 weights at 1\\% (" in density_sentence(results, chance, support)
    healthy = chance.assign(at_chance=0)
    assert "chance (" not in density_sentence(results, healthy, support)
    assert density_sentence(results[results["density"] == 1.0], chance, support) == ""
