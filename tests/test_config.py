import pytest

from helpers.engine.config import RunConfig


@pytest.mark.parametrize("kwargs, message", [
    ({"optimizer": "adamax2"}, "unknown optimizer 'adamax2'; known optimizers: .*adam"),
    ({"scenario": "dense"}, "unknown scenario 'dense'; known scenarios: standard, l2"),
    ({"hparams": {"lr": -0.1}}, r"lr must be a number in \[0, inf\), got -0.1"),
    ({"hparams": {"lr": 0}}, "lr must be positive"),
    ({"hparams": {"betas": (0.9, 0.99)}}, r"unknown hyperparameter\(s\) \['betas'\] for optimizer 'sgd'"),
    ({"schedule": "exp"}, "unknown schedule 'exp'"),
    ({"epochs": 0}, r"epochs \(the schedule's horizon\) must be a whole number >= 1, got 0"),
    ({"batch_size": 0}, r"batch_size must be an integer in \[1, 60,000\] or 'full', got 0"),
    ({"batch_size": 60_001}, r"batch_size must be an integer in \[1, 60,000\] or 'full', got 60001"),
    ({"scenario": "l2", "hparams": {"weight_decay": -1e-4}}, r"weight_decay must be a number in \[0, inf\), got -0.0001"),
    ({"eval_split": "train"}, "eval_split must be"),
])
def test_bad_settings_are_rejected_with_the_fix(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RunConfig(**kwargs)


def test_run_id_is_a_function_of_the_configuration():
    a = RunConfig(optimizer="adam", hparams={"lr": 1e-3}, seed=1)
    assert a.run_id == RunConfig(optimizer="adam", hparams={"lr": 1e-3}, seed=1).run_id
    assert a.run_id != RunConfig(optimizer="adam", hparams={"lr": 2e-3}, seed=1).run_id
    assert a.run_id.startswith("adam-standard-s1-")
    assert RunConfig.from_dict(a.to_dict()) == a


def test_l2_scenario_supplies_and_standard_refuses_weight_decay():
    assert RunConfig(scenario="l2").effective_hparams["weight_decay"] > 0
    assert RunConfig(scenario="l2", hparams={"weight_decay": 1e-3}).effective_hparams["weight_decay"] == 1e-3
    with pytest.raises(ValueError, match="belongs to scenario 'l2'"):
        RunConfig(hparams={"weight_decay": 1e-3})


def test_a_new_protocol_engine_or_update_rule_gives_new_run_ids(monkeypatch):
    import dataclasses

    import helpers.engine
    import helpers.study.definition
    from helpers.optimizers.registry import _collect
    config = RunConfig(optimizer="adam", hparams={"lr": 1e-3})
    before = config.run_id
    monkeypatch.setattr(helpers.study.definition, "PROTOCOL_VERSION", helpers.study.definition.PROTOCOL_VERSION + 1)
    protocol = config.run_id
    monkeypatch.undo()
    assert config.run_id == before
    monkeypatch.setattr(helpers.engine, "ENGINE_VERSION", helpers.engine.ENGINE_VERSION + 1)
    engine = config.run_id
    monkeypatch.undo()
    specs = _collect()
    monkeypatch.setitem(specs, "adam", dataclasses.replace(specs["adam"], version=specs["adam"].version + 1))
    rule = config.run_id
    assert RunConfig(optimizer="sgd").run_id == RunConfig(optimizer="sgd").run_id
    assert len({before, protocol, engine, rule}) == 4
    assert config.versions["optimizer"] == specs["adam"].version
