"""Subcommands behind the Makefile, and the one place where bad input becomes a message.

Every command line entry point (``python -m helpers ...``, ``python -m helpers.study ...``) runs
through :func:`guarded`: a ``ValueError`` (the library's way of rejecting bad input: an unknown
scenario or optimizer, a value out of range) or a ``DataError`` (Fashion-MNIST files missing or
corrupt) prints ``error: <message>`` and exits 2, without a traceback. ``FMNIST_TRACEBACK=1``
shows the traceback as well.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import traceback
from typing import Callable

TRACEBACK_ENV = "FMNIST_TRACEBACK"
BAD_INPUT = 2


def guarded(main: Callable[..., int | None], *args) -> int:
    """Run ``main(*args)``; on a ValueError or DataError print its message and return 2."""
    from .problem.data import DataError
    try:
        return main(*args) or 0
    except (ValueError, DataError) as error:
        if os.environ.get(TRACEBACK_ENV):
            traceback.print_exc()
        print(f"error: {error}", file=sys.stderr)
        if not os.environ.get(TRACEBACK_ENV):
            print(f"(set {TRACEBACK_ENV}=1 to see where it was raised)", file=sys.stderr)
        return BAD_INPUT


def ensure_data() -> int:
    """Verify the Fashion-MNIST files; as root with apt-get, install Debian's package if absent."""
    from .problem.data import DEBIAN_DIR, DataError, FILES, find_data_dir, read_verified
    try:
        directory = find_data_dir()
    except DataError as missing:
        can_install = hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get")
        if os.environ.get("FASHION_MNIST_DIR") or not can_install:
            print(f"error: {missing}", file=sys.stderr)
            return 1
        print(f"Fashion-MNIST not found; installing dataset-fashion-mnist into {DEBIAN_DIR}",
              file=sys.stderr)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        ok = subprocess.run(["apt-get", "install", "-y", "-q", "dataset-fashion-mnist"], env=env).returncode == 0
        if not ok:
            subprocess.run(["apt-get", "update", "-q"], env=env)
            subprocess.run(["apt-get", "install", "-y", "-q", "dataset-fashion-mnist"], env=env)
        try:
            directory = find_data_dir()
        except DataError as still:
            print(f"error: {still}", file=sys.stderr)
            return 1
    try:
        for name in FILES:
            read_verified(directory, name)
    except DataError as bad:
        print(f"error: {bad}", file=sys.stderr)
        return 1
    print(f"Fashion-MNIST verified in {directory}")
    return 0


def tls_certificates(directory: str, days: int) -> int:
    """Write a cluster's certificate and key; print how to start a secured cluster with them."""
    from .study.executors import make_certificates
    files = make_certificates(directory, days)
    options = " ".join(files.dask_options())
    print(f"wrote {files.cert} and {files.key} (readable by you only); copy both to every machine.\n"
          f"scheduler: .venv/bin/dask scheduler --host ADDRESS --protocol tls {options}\n"
          f"workers:   .venv/bin/dask worker tls://ADDRESS:8786 --nworkers 2 --nthreads 1 {options}\n"
          f"sweep:     .venv/bin/python -m helpers sweep --scheduler tls://ADDRESS:8786 {options}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m helpers {data,sweep,report}``: exit 0 done, 1 something failed, 2 bad input."""
    return guarded(_main, argv)


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("data", help="verify (and as root install) the Fashion-MNIST files")
    certs = sub.add_parser("tls-certificates", help="make a self-signed certificate and key for a "
                                                    "TLS-secured Dask cluster (openssl)")
    certs.add_argument("directory", help="where to write fmnist-dask.pem and fmnist-dask-key.pem")
    certs.add_argument("--days", type=int, default=365, help="validity (default: 365)")
    from .study import sweep
    sweep.add_arguments(sub.add_parser("sweep", help="run the study: notebooks x scenarios, summary, report",
                                       description=sweep.__doc__,
                                       formatter_class=argparse.RawDescriptionHelpFormatter))
    report = sub.add_parser("report", help="build report/report.pdf from the records (at most 10 pages)")
    report.add_argument("--no-notebook", action="store_true", help="reuse the tables/figures on disk")
    args = parser.parse_args(argv)
    if args.command == "report":
        from .evidence.report import main as report_main
        return report_main(["--no-notebook"] if args.no_notebook else [])
    if args.command == "data":
        return ensure_data()
    if args.command == "tls-certificates":
        return tls_certificates(args.directory, args.days)
    if args.command == "sweep":
        return sweep.main(args)
    return 2
