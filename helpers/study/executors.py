"""Where training runs execute, and how a sweep survives losing a worker.

Two executors with the ``concurrent.futures`` interface:

- local (default, nothing to start): a process pool (``forkserver`` processes) sized to the
  machine, ``workers x threads <= cores``; a pool broken by a killed worker replaces itself;
- Dask: given a scheduler address (argument or ``$FMNIST_DASK_SCHEDULER``), a
  ``distributed.Client`` and its ``client.get_executor(pure=False)``. Dask's nanny starts
  workers with ``OMP_NUM_THREADS=1``, so a worker process runs torch on one thread per task;
  start workers with ``--nthreads 1`` (two runs in one process would share torch's global RNG).

Across machines, use TLS (:class:`TLSFiles`; ``--tls-ca-file/--tls-cert/--tls-key`` or
``$FMNIST_DASK_TLS_CA_FILE/_CERT/_KEY``): a Dask scheduler runs whatever code its clients send
on every worker, so an unencrypted one must only listen on 127.0.0.1. With TLS, scheduler,
workers and clients all present a certificate the cluster's CA signed (mutual TLS); a client
without one is refused. :func:`make_certificates` writes a self-signed set with ``openssl``.

Workers never write to the runs directory: :func:`compute_run` trains in a scratch
directory and returns the run's metadata and records; :func:`run_many` (the client) writes
them atomically. So a worker may die at any moment (or live on another machine without a
shared file system) and nothing partial reaches ``outputs/runs``. A run whose future raises
(worker killed: ``KilledWorker``, ``BrokenProcessPool``...) is resubmitted up to ``retries``
times, then recorded as failed; the sweep goes on.
"""
from __future__ import annotations

import atexit
import json
import multiprocessing
import os
import signal
import sys
import tempfile
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Executor, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SCHEDULER_ENV = "FMNIST_DASK_SCHEDULER"
JOBS_ENV = "FMNIST_JOBS"
TLS_ENV = {"ca_file": "FMNIST_DASK_TLS_CA_FILE", "cert": "FMNIST_DASK_TLS_CERT", "key": "FMNIST_DASK_TLS_KEY"}
LOCAL_HOSTS = ("127.0.0.1", "localhost", "[::1]")
PRELOAD = ["torch", "torch.optim", "torch._dynamo", "helpers.study.records", "helpers.engine.train"]


def cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def scheduler_address(address: str | None = None) -> str | None:
    """The Dask scheduler to use: ``address``, else ``$FMNIST_DASK_SCHEDULER``, else None (local)."""
    return address or os.environ.get(SCHEDULER_ENV) or None


@dataclass(frozen=True)
class TLSFiles:
    """PEM files that secure a Dask cluster: the CA that signs every member's certificate, and
    this member's certificate and private key (for a self-signed set, the CA is the certificate)."""
    ca_file: str
    cert: str
    key: str

    @classmethod
    def from_options(cls, ca_file=None, cert=None, key=None) -> "TLSFiles | None":
        """The three files given (each else its ``$FMNIST_DASK_TLS_*``), or None when none is;
        a partial set or a missing file is a ValueError naming it."""
        given = {"ca_file": ca_file, "cert": cert, "key": key}
        given = {k: v or os.environ.get(TLS_ENV[k]) or None for k, v in given.items()}
        if not any(given.values()):
            return None
        missing = [f"--tls-{k.replace('_', '-')} (${TLS_ENV[k]})" for k, v in given.items() if not v]
        if missing:
            raise ValueError(f"TLS needs all three files; missing: {', '.join(missing)}")
        absent = [f"{k}={v}" for k, v in given.items() if not Path(v).is_file()]
        if absent:
            raise ValueError(f"TLS file(s) not found: {', '.join(absent)}")
        return cls(**{k: str(Path(v).resolve()) for k, v in given.items()})

    def security(self):
        from distributed.security import Security
        return Security(tls_ca_file=self.ca_file, tls_client_cert=self.cert, tls_client_key=self.key,
                        require_encryption=True)

    def environment(self) -> dict:
        """The variables that hand these files to the kernels a sweep starts."""
        return {TLS_ENV[k]: getattr(self, k) for k in TLS_ENV}

    def dask_options(self) -> list[str]:
        """``dask scheduler`` / ``dask worker`` options for these files."""
        return ["--tls-ca-file", self.ca_file, "--tls-cert", self.cert, "--tls-key", self.key]


def make_certificates(directory, days: int = 365, name: str = "fmnist-dask") -> TLSFiles:
    """A self-signed certificate and key for a whole cluster (the certificate is its own CA),
    made with ``openssl req -x509 -newkey rsa:3072 -nodes -sha256 -days DAYS -subj /CN=NAME``.
    Copy the two files to every machine of the cluster over a channel you trust; the key is
    written readable by its owner only."""
    import shutil
    import subprocess
    if shutil.which("openssl") is None:
        raise ValueError("openssl not found (Debian: apt-get install -y openssl)")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{name}.pem", directory / f"{name}-key.pem"
    old_mask = os.umask(0o077)
    try:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:3072", "-nodes", "-sha256",
                        "-days", str(days), "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(cert)],
                       check=True, capture_output=True, timeout=120)
    finally:
        os.umask(old_mask)
    return TLSFiles(str(cert.resolve()), str(cert.resolve()), str(key.resolve()))


def check_address(address: str, tls: TLSFiles | None) -> str:
    """The address to connect to: ``tls://`` when TLS files are given (a ``tcp://`` address with
    them is an error); a warning on stderr for an unencrypted scheduler beyond this machine."""
    scheme, sep, rest = address.partition("://")
    if not sep:
        scheme, rest = ("tls" if tls else "tcp"), address
    if tls and scheme != "tls":
        raise ValueError(f"scheduler address {address} is not TLS but TLS files are given; "
                         f"start the scheduler with --protocol tls and use tls://{rest}")
    if scheme == "tls" and not tls:
        raise ValueError(f"scheduler {address} uses TLS: give --tls-ca-file, --tls-cert and --tls-key "
                         f"(or $FMNIST_DASK_TLS_CA_FILE, _CERT, _KEY)")
    host = rest.rsplit(":", 1)[0]
    if scheme != "tls" and host not in LOCAL_HOSTS:
        print(f"warning: {address} is an unencrypted Dask scheduler beyond this machine: anyone who "
              f"reaches its port can run code on every worker. Use TLS (README: 'Where the runs "
              f"execute').", file=sys.stderr)
    return f"{scheme}://{rest}"


def pool_shape(workers: int | None = None) -> tuple[int, int]:
    """(worker processes, torch threads each): ``workers`` or ``$FMNIST_JOBS`` or one per core."""
    cores = cpu_cores()
    if workers is None:
        workers = int(os.environ.get(JOBS_ENV) or 0) or cores
    if not (isinstance(workers, int) and workers >= 1):
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    return workers, max(1, cores // workers)


def _init_worker(threads: int, owner_pid: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the owner's to handle
    os.environ["OMP_NUM_THREADS"] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    threading.Thread(target=_exit_with, args=(owner_pid,), daemon=True, name="watch-owner").start()


def _exit_with(owner_pid: int) -> None:
    """Exit when the process that made the pool is gone. (Its forkserver outlives it: every
    worker holds the forkserver's keep-alive pipe, so watching the parent is not enough.)"""
    import psutil
    try:
        owner = psutil.Process(owner_pid)
    except psutil.NoSuchProcess:
        os._exit(1)
    while True:
        time.sleep(1.0)
        try:
            alive = owner.is_running() and owner.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            alive = False
        if not alive:
            os._exit(1)


class LocalPool(Executor):
    """A process pool that replaces itself when a worker dies (the pool breaks).

    Futures in flight when it broke raise ``BrokenProcessPool``; the next ``submit`` starts
    a fresh pool, so a caller that resubmits them goes on. Workers exit when this process dies
    (checked every second).
    """

    def __init__(self, workers: int | None = None, threads: int | None = None,
                 context: str = "forkserver"):
        self.workers, default_threads = pool_shape(workers)
        self.threads = threads or default_threads
        self._context = multiprocessing.get_context(context)
        if context == "forkserver":
            self._context.set_forkserver_preload(PRELOAD)
        self._lock = threading.Lock()
        self._pool = self._start()

    def _start(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(self.workers, mp_context=self._context,
                                   initializer=_init_worker, initargs=(self.threads, os.getpid()))

    def submit(self, fn, /, *args, **kwargs):
        with self._lock:
            try:
                return self._pool.submit(fn, *args, **kwargs)
            except BrokenProcessPool:
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = self._start()
                return self._pool.submit(fn, *args, **kwargs)

    def pids(self) -> list[int]:
        return list((getattr(self._pool, "_processes", None) or {}).keys())

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=cancel_futures)

    def kill(self) -> None:
        """Stop now: cancel what is queued and terminate the worker processes."""
        processes = list((getattr(self._pool, "_processes", None) or {}).values())
        self._pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            if process.is_alive():
                process.terminate()


@contextmanager
def make_executor(address: str | None = None, workers: int | None = None, tls: TLSFiles | None = None):
    """Yield an executor: Dask's when a scheduler address is given (or in the environment),
    over TLS with ``tls`` (or the files in ``$FMNIST_DASK_TLS_*``), else a :class:`LocalPool` of
    ``workers`` processes; close it on the way out."""
    address = scheduler_address(address)
    if address:
        from distributed import Client
        tls = tls or TLSFiles.from_options()
        address = check_address(address, tls)
        client = Client(address, set_as_default=False, timeout="30s",
                        **({"security": tls.security()} if tls else {}))
        try:
            yield client.get_executor(pure=False)
        finally:
            client.close()
        return
    pool = LocalPool(workers)
    try:
        yield pool
    except BaseException:
        pool.kill()
        raise
    pool.shutdown(wait=True)


_SHARED: dict = {}


def shared_executor() -> Executor | None:
    """The executor the environment asks for, kept for this process's life, or None (in-process).

    ``$FMNIST_DASK_SCHEDULER`` -> Dask (over TLS with ``$FMNIST_DASK_TLS_*``); ``$FMNIST_JOBS`` > 1
    -> a local pool of that many processes. ``helpers.study.sweep`` sets them, so notebooks calling
    ``run_all`` scale out unchanged.
    """
    address, jobs = scheduler_address(), int(os.environ.get(JOBS_ENV) or 0)
    if not address and jobs <= 1:
        return None
    key = (address, jobs, *(os.environ.get(v) for v in TLS_ENV.values()))
    if key not in _SHARED:
        context = make_executor(address, None if address else jobs)
        _SHARED[key] = context.__enter__()
        atexit.register(context.__exit__, None, None, None)
    return _SHARED[key]


def compute_run(config) -> dict:
    """Worker side: train ``config`` in a scratch directory; return its metadata, records and
    per-sample test predictions (None when it stored none)."""
    from .records import load_predictions, run_and_record
    threads = os.environ.get("OMP_NUM_THREADS")
    if threads and "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(int(threads))
    with tempfile.TemporaryDirectory(prefix="fmnist-run-") as scratch:
        meta = run_and_record(config, scratch)
        csv = Path(scratch, config.run_id, "records.csv")
        predictions = load_predictions(config.run_id, scratch)
        return {"meta": meta, "records": csv.read_text() if csv.is_file() else None,
                "predictions": predictions}


def store_run(result: dict, root) -> dict:
    """Client side: write a worker's result atomically (records and predictions first; meta.json
    marks it done)."""
    from .records import DONE, PREDICTIONS, atomic_write_text, read_meta, write_predictions
    meta = result["meta"]
    existing = read_meta(meta["run_id"], root)
    if existing is not None and existing.get("status") in DONE:
        return existing
    folder = Path(root) / meta["run_id"]
    if result.get("records") is not None:
        atomic_write_text(folder / "records.csv", result["records"])
    else:
        (folder / "records.csv").unlink(missing_ok=True)
    if result.get("predictions"):
        write_predictions(folder / PREDICTIONS, result["predictions"])
    atomic_write_text(folder / "meta.json", json.dumps(meta, indent=1, sort_keys=True, default=str))
    return meta


def record_lost(config, error: BaseException, attempts: int, root) -> dict:
    """Record a run whose worker kept dying as failed (retried by the next sweep)."""
    from .records import failed_meta, start_meta
    meta = failed_meta(start_meta(config), error)
    meta["attempts"] = attempts
    return store_run({"meta": meta, "records": None}, root)


def remove_temp_files(root, run_ids) -> list[Path]:
    """Delete temporary files a killed writer left in these runs' folders (and emptied folders)."""
    removed = []
    for run_id in run_ids:
        folder = Path(root) / run_id
        if not folder.is_dir():
            continue
        for tmp in folder.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
        if not any(folder.iterdir()):
            folder.rmdir()
    return removed


def run_many(configs, executor: Executor, root, progress: bool = True, retries: int = 2) -> list[dict]:
    """Run the configurations not yet done on ``executor``; return every one's metadata, in order.

    Duplicated configurations run once. A future that raises is resubmitted up to
    ``retries`` times, then the run is recorded as failed. The bar (stderr) counts runs done,
    failed and resubmitted, with an ETA.
    """
    from tqdm.auto import tqdm

    from .records import DONE, read_meta
    configs = list(configs)
    unique = {c.run_id: c for c in configs}
    remove_temp_files(root, unique)
    metas: dict[str, dict] = {}
    for run_id in unique:
        meta = read_meta(run_id, root)
        if meta is not None and meta.get("status") in DONE:
            metas[run_id] = meta
    counts = {"failed": 0, "resubmitted": 0}
    bar = tqdm(total=len(unique), initial=len(metas), desc="runs", file=sys.stderr,
               disable=not progress, dynamic_ncols=True)
    pending = {executor.submit(compute_run, c): c for rid, c in unique.items() if rid not in metas}
    attempts: dict[str, int] = {}
    try:
        while pending:
            done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            for future in done:
                config = pending.pop(future)
                try:
                    meta = store_run(future.result(), root)
                except (KeyboardInterrupt, SystemExit):
                    raise
                except BaseException as error:  # the worker died or the executor broke
                    attempts[config.run_id] = attempts.get(config.run_id, 0) + 1
                    if attempts[config.run_id] <= retries:
                        counts["resubmitted"] += 1
                        pending[executor.submit(compute_run, config)] = config
                        bar.set_postfix(counts, refresh=True)
                        continue
                    meta = record_lost(config, error, attempts[config.run_id], root)
                metas[config.run_id] = meta
                counts["failed"] += meta.get("status") == "failed"
                bar.set_postfix(counts, refresh=False)
                bar.update(1)
    finally:
        bar.close()
        for future in pending:
            future.cancel()
    remove_temp_files(root, unique)
    return [metas[c.run_id] for c in configs]
