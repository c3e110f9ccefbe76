"""`make study PROFILE=ci` end to end: the planner trains the CI-sized study, papermill executes
every notebook on its records (each family notebook once, each main scenario at least once),
the summary writes the report's tables and figures and the report compiles, all into scratch;
afterwards the planner has nothing left to train. A failure in one stage lets the others
finish and the command exits 1 naming it."""
import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.study import stages, sweep
from helpers.study.records import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_ci_profile_runs_the_whole_study_into_scratch(tmp_path):
    runs, out, report = tmp_path / "runs", tmp_path / "notebooks", tmp_path / "report"
    env = {**os.environ, "FMNIST_DEVICE": "cpu"}
    for variable in ("FMNIST_JOBS", "FMNIST_DASK_SCHEDULER", "FMNIST_RUNS_DIR"):
        env.pop(variable, None)
    command = [sys.executable, "-m", "helpers", "sweep", "--profile", "ci", "--runs-dir", str(runs),
               "--output-dir", str(out), "--report-dir", str(report)]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=850)
    assert result.returncode == 0, result.stderr[-4000:]
    expected = [j.output.name for j in sweep.plan("ci", output_dir=out, runs_dir=str(runs), report_dir=report)]
    assert sorted(p.name for p in out.glob("*.ipynb")) == sorted(expected)
    assert len(expected) == 7 and not list(out.glob("*.failed.ipynb"))
    assert (report / "report.pdf").is_file() and (report / "tables" / "macros.tex").is_file()
    assert "training: 0 run(s) to train now, about 0 more" in stages.preview("ci", runs)


def test_a_failed_stage_lets_the_rest_finish_and_is_named(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(stages, "train", lambda *a, **k: ["run abc123 (standard sgd final): RuntimeError: boom"])
    status = sweep.run_study("ci", notebooks_dir=tmp_path, runs_dir=str(tmp_path / "runs"),
                             output_dir=tmp_path / "out", report=False, progress=False)
    err = capsys.readouterr().err
    assert status == 1 and "failed (1):" in err and "run abc123 (standard sgd final): RuntimeError: boom" in err


class FakePlan:
    def __init__(self, done):
        self.done = done


def test_training_stage_names_the_failed_runs(tmp_path, monkeypatch):
    from helpers.engine.config import RunConfig
    from helpers.study import executors, planner
    from helpers.study.planner import Planned
    good, bad = (RunConfig(optimizer="sgd", hparams={"lr": lr}, epochs=1, train_fraction=0.01) for lr in (0.1, 0.2))
    done = [Planned(c, "standard", "sgd", "projection", "final", (1,)) for c in (good, bad)]
    monkeypatch.setattr(planner, "execute", lambda *a, **k: FakePlan(done))
    monkeypatch.setattr(executors, "make_executor", lambda *a, **k: contextlib.nullcontext())
    atomic_write_text(tmp_path / good.run_id / "meta.json", '{"status": "finished"}')
    atomic_write_text(tmp_path / bad.run_id / "meta.json",
                      '{"status": "failed", "error": "Traceback ...\\nRuntimeError: out of memory"}')
    assert stages.train("ci", tmp_path, jobs=1) == [
        f"run {bad.run_id} (standard sgd final): RuntimeError: out of memory"]
