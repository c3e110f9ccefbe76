"""A real Dask cluster on 127.0.0.1 (one scheduler, two single-threaded workers) runs sweeps.

Equality of records between executors is checked on every numeric column but wall time,
with rtol=1e-6 and atol=1e-9 (both sides train on one torch thread per process).
"""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from helpers.engine.config import RunConfig
from helpers.study.experiment import run_all
from helpers.study.executors import LocalPool, make_executor
from helpers.study.records import load_records

from run_records import assert_same_records, leftovers

distributed = pytest.importorskip("distributed")
pytestmark = pytest.mark.slow

DASK = str(Path(sys.executable).with_name("dask"))
TINY = dict(train_fraction=0.02, epochs=1, eval_split="val", val_size=500)


def tiny_configs(**overrides) -> list[RunConfig]:
    settings = {**TINY, **overrides}
    return [RunConfig(optimizer="sgd", hparams={"lr": 0.05}, seed=0, **settings),
            RunConfig(optimizer="sgd", hparams={"lr": 0.05}, seed=1, **settings),
            RunConfig(optimizer="adam", hparams={"lr": 1e-3}, seed=0, **settings),
            RunConfig(optimizer="nesterov", hparams={"lr": 0.02}, scenario="l2", seed=0, **settings)]


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait(timeout=30)


class Cluster:
    def __init__(self, directory: Path):
        self.directory = directory
        self.processes: list[subprocess.Popen] = []
        self.client = None

    def start(self, *args) -> subprocess.Popen:
        log = open(self.directory / f"{args[0]}-{len(self.processes)}.log", "w")
        process = subprocess.Popen([DASK, *args], cwd=self.directory, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        self.processes.append(process)
        return process

    def up(self, n_workers: int = 2, tls=None) -> None:
        """Scheduler and workers on 127.0.0.1; with ``tls`` (executors.TLSFiles) over TLS only."""
        info = self.directory / "scheduler.json"
        secured = ["--protocol", "tls", *tls.dask_options()] if tls else []
        self.start("scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                   "--scheduler-file", str(info), *secured)
        deadline = time.monotonic() + 60
        while not info.is_file() and time.monotonic() < deadline:
            time.sleep(0.1)
        self.address = json.loads(info.read_text())["address"]
        assert self.address.startswith(f"{'tls' if tls else 'tcp'}://127.0.0.1:")
        self.workers = [self.start("worker", self.address, "--nworkers", "1", "--nthreads", "1",
                                   "--no-dashboard", "--death-timeout", "60",
                                   "--local-directory", str(self.directory), *secured[2:])
                        for _ in range(n_workers)]
        self.client = distributed.Client(self.address, timeout="60s", set_as_default=False,
                                         **({"security": tls.security()} if tls else {}))
        self.client.wait_for_workers(n_workers, timeout=120)

    def down(self) -> None:
        if self.client is not None:
            self.client.close()
        for process in reversed(self.processes):
            stop(process)

    def worker_running_a_task(self) -> tuple[subprocess.Popen, str] | None:
        """The `dask worker` command whose worker process is training a run now."""
        busy = [addr for addr, keys in self.client.processing().items() if keys]
        pids = self.client.run(os.getpid, workers=busy) if busy else {}
        for addr, pid in pids.items():
            pgid = os.getpgid(pid)
            for process in self.workers:
                if process.pid == pgid:
                    return process, addr
        return None


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, request):
    running = Cluster(tmp_path_factory.mktemp("dask"))
    request.addfinalizer(running.down)
    running.up()
    return running


def test_dask_and_local_pool_give_the_same_records(cluster, tmp_path):
    configs = tiny_configs()
    with make_executor(cluster.address) as executor:
        dask_metas = run_all(configs, executor, root=tmp_path / "dask")
    pool = LocalPool(workers=2, threads=1)
    try:
        local_metas = run_all(configs, pool, root=tmp_path / "local")
    finally:
        pool.shutdown()
    ids = [c.run_id for c in configs]
    assert [m["run_id"] for m in dask_metas] == [m["run_id"] for m in local_metas] == ids
    assert {m["status"] for m in dask_metas + local_metas} == {"finished"}
    assert_same_records(tmp_path / "dask", tmp_path / "local", ids)
    assert {m["environment"]["torch_threads"] for m in dask_metas + local_metas} == {1}
    assert leftovers(tmp_path / "dask") == leftovers(tmp_path / "local") == []


def test_sweep_survives_a_worker_killed_mid_run(cluster, tmp_path):
    configs = tiny_configs(epochs=2, train_fraction=0.05)
    root = tmp_path / "runs"
    outcome: dict = {}

    def sweep():
        try:
            with make_executor(cluster.address) as executor:
                outcome["metas"] = run_all(configs, executor, root=root, progress=False)
        except BaseException as error:  # reported by the assertion below
            outcome["error"] = error

    thread = threading.Thread(target=sweep, daemon=True)
    thread.start()
    killed = None
    deadline = time.monotonic() + 120
    while killed is None and thread.is_alive() and time.monotonic() < deadline:
        if any(root.glob("*/meta.json")):
            killed = cluster.worker_running_a_task()
        time.sleep(0.02)
    assert killed is not None, "no run was in flight after the first one finished"
    victim, address = killed
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait(timeout=30)
    thread.join(timeout=180)
    assert not thread.is_alive() and "error" not in outcome, outcome.get("error")
    assert address not in cluster.client.scheduler_info()["workers"]

    ids = {c.run_id for c in configs}
    assert len(ids) == len(configs)
    assert [m["run_id"] for m in outcome["metas"]] == [c.run_id for c in configs]
    assert {m["status"] for m in outcome["metas"]} == {"finished"}
    assert {p.name for p in root.iterdir()} == ids
    assert leftovers(root) == []
    frame = load_records(root)
    assert frame.groupby("run_id").size().to_dict() == {i: 2 for i in ids}
