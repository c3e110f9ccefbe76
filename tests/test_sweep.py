"""The study driver: a bad specification is rejected before anything runs; a sweep killed
mid-way and restarted ends with the records of an uninterrupted one, finished runs untouched;
a local pool that loses a worker goes on.

Records are compared on every numeric column but wall time with rtol=1e-6, atol=1e-9
(every side trains on one torch thread). These tests use run_all's single-run path
(batch=False) so that runs finish one at a time; test_dask covers the batched default.
"""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import Executor, Future
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import psutil
import pytest
import torch

from helpers.study import sweep
from helpers.engine.config import RunConfig
from helpers.study.executors import LocalPool
from helpers.study.experiment import run_all
from helpers.study.records import load_records

from run_records import assert_same_records, leftovers

DATA = Path(__file__).parent / "data"
PROBE = "sweep_probe"


def probe_configs(seeds, epochs, train_fraction, scenario="standard") -> list[RunConfig]:
    """The runs tests/data/sweep_probe.ipynb makes of its parameters."""
    return [RunConfig(optimizer="sgd", hparams={"lr": 0.05}, scenario=scenario, epochs=epochs,
                      train_fraction=train_fraction, eval_split="val", val_size=500, seed=s)
            for s in seeds]


def started(root: Path) -> dict:
    """run_id -> meta.json 'started' of the finished runs under root."""
    metas = (json.loads(p.read_text()) for p in Path(root).glob("*/meta.json"))
    return {m["run_id"]: m["started"] for m in metas if m["status"] == "finished"}


def kill_tree(process: subprocess.Popen) -> None:
    """SIGKILL a process and all its descendants (the sweep, its kernel, their workers)."""
    try:
        tree = psutil.Process(process.pid)
        victims = tree.children(recursive=True) + [tree]
    except psutil.NoSuchProcess:
        victims = []
    for victim in victims:
        try:
            victim.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    process.wait(timeout=30)


def test_bad_sweep_specification_is_rejected_before_anything_runs(tmp_path, capsys):
    out, runs = tmp_path / "out", tmp_path / "runs"
    common = dict(notebooks=[PROBE], notebooks_dir=DATA, output_dir=out, runs_dir=str(runs))
    assert sweep.run_study(overrides={"learning_rate": 0.1}, **common) == 2
    message = capsys.readouterr().err
    assert "learning_rate" in message and "train_fraction" in message and PROBE in message
    assert sweep.run_study(scenarios=["standard", "sparse99"], **common) == 2
    message = capsys.readouterr().err
    assert "sparse99" in message and "sparse60" in message
    with pytest.raises(sweep.SweepSpecError, match=r"no_such_notebook[\s\S]*sweep_probe"):
        sweep.plan(notebooks=["no_such_notebook"], notebooks_dir=DATA)
    with pytest.raises(sweep.SweepSpecError, match="unknown profile 'huge'"):
        sweep.plan("huge")
    assert not out.exists() and not runs.exists()


def test_profiles_plan_every_notebook_and_scenario(tmp_path):
    jobs = sweep.plan("quick", notebooks=[PROBE], notebooks_dir=DATA, output_dir=tmp_path,
                      runs_dir="/somewhere", scheduler="tcp://127.0.0.1:8786")
    quick = sweep.profile_spec("quick")
    assert quick["scenarios"] == ["standard", "l2", "sparse60"]
    assert [j.output.name for j in jobs] == [f"{PROBE}__{s}.ipynb" for s in quick["scenarios"]]
    assert all(j.runs_dir == j.parameters["runs_dir"] == "/somewhere" and
               j.parameters["scheduler"] == "tcp://127.0.0.1:8786" for j in jobs)
    assert {j.parameters["epochs"] for j in jobs} == {quick["params"]["epochs"]}
    with pytest.raises(sweep.SweepSpecError, match=r"no parameter\(s\) \[.members.\]"):
        sweep.plan("full", notebooks=[PROBE], notebooks_dir=DATA, overrides={"members": ["sgd"]})


def test_the_study_runs_every_notebook_from_the_definition(tmp_path):
    from helpers.study import definition as D
    full = sweep.plan("full", output_dir=tmp_path, runs_dir=str(tmp_path / "runs"))
    names = [j.name for j in full]
    main = [s for s in D.main_scenarios("full") if s not in D.THINNER]
    assert main == ["standard", "l2", "sparse60"]
    assert names == ["00_starter_baseline", *(f"{f}__{s}" for f in sweep.FAMILIES for s in main),
                     "50_sparsity", "90_summary"]
    sparsity = next(j for j in full if j.name == "50_sparsity").parameters
    assert sparsity["profile"] == "full"  # it runs the definition's sparse rows of that profile
    summary = next(j for j in full if j.name == "90_summary").parameters
    assert summary["report_dir"] == "report"  # from the repository root, wherever the kernel runs
    assert sweep.repo_path(summary["report_dir"]) == sweep.REPORT_DIR.resolve()
    assert next(j for j in full if j.name == "50_sparsity").parameters["runs_dir"] == str(tmp_path / "runs")
    inside = sweep.plan("full", notebooks=["10_sgd"], scenarios=["l2"], runs_dir=str(sweep.ROOT / "outputs" / "runs"))
    assert inside[0].parameters["runs_dir"] == "outputs/runs"
    assert sweep.study_runs_dir("full", "outputs/runs") == sweep.ROOT / "outputs" / "runs"
    assert {j.output.parent for j in full} == {tmp_path}
    ci = sweep.plan("ci", runs_dir=str(tmp_path / "runs"))
    assert {j.output.parent for j in ci} == {sweep.SCRATCH / "ci" / "notebooks"}
    assert [j.name for j in ci] == ["00_starter_baseline", "10_sgd__standard", "20_momentum__l2",
                                    "30_noise_reduction__sparse60", "40_second_order__standard", "50_sparsity",
                                    "90_summary"]
    assert next(j for j in ci if j.name == "20_momentum__l2").parameters["members"] == ["adam"]


@pytest.mark.slow
def test_sweep_killed_midway_and_restarted_equals_an_uninterrupted_one(tmp_path, one_thread):
    runs, out, reference = tmp_path / "runs", tmp_path / "out", tmp_path / "reference"
    seeds, epochs, fraction = [0, 1, 2, 3], 1, 0.05
    command = [sys.executable, "-m", "helpers", "sweep", "--notebooks-dir", str(DATA),
               "--notebooks", PROBE, "--scenarios", "standard", "--jobs", "1",
               "--runs-dir", str(runs), "--output-dir", str(out), "-p", f"seeds={json.dumps(seeds)}",
               "-p", f"epochs={epochs}", "-p", f"train_fraction={fraction}", "-p", "batch=false"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "FMNIST_DEVICE": "cpu"}
    env.pop("FMNIST_JOBS", None)
    env.pop("FMNIST_DASK_SCHEDULER", None)
    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 240
        while len(started(runs)) < 2 and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        kill_tree(first)
    before = started(runs)
    assert 2 <= len(before) < len(seeds), (tmp_path / "first.log").read_text()[-3000:]

    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]

    configs = probe_configs(seeds, epochs, fraction)
    run_all(configs, root=reference, progress=False, batch=False)
    ids = [c.run_id for c in configs]
    assert_same_records(runs, reference, ids)
    after = started(runs)
    assert {k: after[k] for k in before} == before  # finished runs were not recomputed
    assert set(after) == set(ids)
    assert leftovers(runs) == []
    assert sorted(p.name for p in out.iterdir()) == [sweep.KEYS_FILE, f"{PROBE}__standard.ipynb"]
    job, = sweep.plan(notebooks=[PROBE], notebooks_dir=DATA, output_dir=out, scenarios=["standard"],
                      overrides={"seeds": seeds, "epochs": epochs, "train_fraction": fraction,
                                 "batch": False},
                      runs_dir=str(runs))
    assert sweep.is_current(job)  # the same command again reuses the notebook output
    (out / sweep.KEYS_FILE).unlink()
    assert not sweep.is_current(job)  # a fresh clone (no keys file: they are not committed) executes it


@pytest.mark.slow
def test_local_pool_replaces_a_killed_worker(tmp_path):
    configs = probe_configs([0, 1, 2, 3], epochs=2, train_fraction=0.05)
    root = tmp_path / "runs"
    pool = LocalPool(workers=2, threads=1)
    outcome: dict = {}

    def sweep_runs():
        try:
            outcome["metas"] = run_all(configs, pool, root=root, progress=False, batch=False)
        except BaseException as error:  # reported by the assertion below
            outcome["error"] = error

    thread = threading.Thread(target=sweep_runs, daemon=True)
    try:
        thread.start()
        deadline = time.monotonic() + 240
        while not started(root) and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        done_at_kill = len(started(root))
        assert 1 <= done_at_kill < len(configs)
        os.kill(pool.pids()[0], signal.SIGKILL)
        thread.join(timeout=240)
    finally:
        pool.kill()
    assert not thread.is_alive() and "error" not in outcome, outcome.get("error")
    assert {m["status"] for m in outcome["metas"]} == {"finished"}
    assert {p.name for p in root.iterdir()} == {c.run_id for c in configs}
    assert leftovers(root) == []


class DyingExecutor(Executor):
    """Every submitted run loses its worker."""

    def __init__(self):
        self.submitted = 0

    def submit(self, fn, /, *args, **kwargs):
        self.submitted += 1
        future = Future()
        future.set_exception(BrokenProcessPool("worker killed"))
        return future


def test_run_whose_workers_keep_dying_is_recorded_failed_then_redone(runs_root, one_thread):
    config, = probe_configs([0], epochs=1, train_fraction=0.02)
    dying = DyingExecutor()
    meta, again = run_all([config, config], dying, retries=2, progress=False, batch=False)
    assert dying.submitted == 3  # deduplicated, then two resubmissions
    assert again == meta
    assert meta["status"] == "failed" and "BrokenProcessPool" in meta["error"]
    assert load_records(runs_root)["status"].tolist() == ["failed"]
    meta, = run_all([config], progress=False, batch=False)
    assert meta["status"] == "finished"
    assert leftovers(runs_root) == []


POOL_OWNER = """
import os, sys, time
from helpers.study import executors
executors.PRELOAD = []  # a bare forkserver starts faster; it outlives its owner all the same
pool = executors.LocalPool(workers=2, threads=1)
pool.submit(os.getpid).result()
print(" ".join(map(str, pool.pids())), flush=True)
time.sleep(600)
"""


@pytest.mark.slow
def test_pool_processes_exit_when_their_owner_is_killed():
    owner = subprocess.Popen([sys.executable, "-c", POOL_OWNER], stdout=subprocess.PIPE, text=True)
    try:
        workers = [int(pid) for pid in owner.stdout.readline().split()]
        assert workers
        descendants = psutil.Process(owner.pid).children(recursive=True)
        assert {p.pid for p in descendants} >= set(workers)
    finally:
        owner.kill()
        owner.wait(timeout=30)
    gone, alive = psutil.wait_procs(descendants, timeout=20)
    assert alive == [], [" ".join(p.cmdline())[:80] for p in alive]


def test_a_stored_notebook_output_is_stale_once_a_record_changes(tmp_path):
    runs = tmp_path / "runs"
    (runs / "a").mkdir(parents=True)
    (runs / "a" / "meta.json").write_text('{"status": "finished"}')
    job = sweep.Job("probe", DATA / f"{PROBE}.ipynb", tmp_path / "out.ipynb", {"x": 1}, runs_dir=str(runs))
    first = job.key
    assert job.key == first
    (runs / "a" / "meta.json").write_text('{"status": "diverged"}')
    changed = job.key
    assert changed != first
    (runs / "b").mkdir()
    (runs / "b" / "records.csv").write_text("epoch\n1\n")
    assert job.key not in (first, changed)


def test_executed_notebooks_keep_no_timestamps_or_random_ids():
    import nbformat
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
    notebook.cells[0].metadata.update(tags=["injected-parameters"], execution={"iopub.status.busy": "2026"},
                                      papermill={"duration": 0.1, "start_time": "t", "end_time": "t",
                                                 "status": "completed"})
    notebook.metadata["papermill"] = {"duration": 3.0, "start_time": "t", "end_time": "t",
                                      "input_path": "/a/b.ipynb", "output_path": "/c/d.ipynb", "parameters": {}}
    sweep.scrub_volatile(notebook)
    cell = notebook.cells[0]
    assert cell.id == "injected-parameters" and "execution" not in cell.metadata
    assert cell.metadata["papermill"] == {"status": "completed"}
    assert notebook.metadata["papermill"] == {"parameters": {}}
