"""Subcommands behind the Makefile."""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("data", help="verify (and as root install) the Fashion-MNIST files")
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
    if args.command == "sweep":
        return sweep.main(args)
    return 2
