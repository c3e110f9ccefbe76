"""Apply each mutation of tools/mutants/mutations.py to a scratch copy and run its tests.

    python tools/mutants/run.py [--table AREA ...] [--only NAME ...] [--source head|worktree] [--list]

Tables: ``mutations.py`` (area ``curvature``) and every ``<area>_mutations.py`` beside it that
defines ``MUTATIONS``; all are run unless ``--table`` picks some.

The scratch copy (a temporary folder; the shared working tree is never touched) holds the
committed tree (``--source head``, default: ``git archive HEAD``) or the working tree's
tracked and unignored files (``--source worktree``). Its ``helpers`` package is imported
first (PYTHONPATH), which is checked. The tests of every row must pass on the unmutated copy;
then each mutation is applied alone, its tests run (pytest -x), and the file restored.
Prints ``name -> killed|survived`` and exits 1 if any mutation survived (2 on a setup error).
"""
from __future__ import annotations

import argparse
import importlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from mutations import MUTATIONS, Mutation  # noqa: E402

ROOT = HERE.parents[1]
TIMEOUT_S = 600


def tables() -> dict[str, list[Mutation]]:
    """Area -> rows: ``mutations.py`` is ``curvature``; ``<area>_mutations.py`` is ``<area>``."""
    found = {"curvature": list(MUTATIONS)}
    for path in sorted(HERE.glob("*_mutations.py")):
        module = importlib.import_module(path.stem)
        found[path.stem.removesuffix("_mutations")] = list(module.MUTATIONS)
    return found


def scratch_copy(source: str) -> Path:
    target = Path(tempfile.mkdtemp(prefix="fmnist-mutants-"))
    if source == "head":
        archive = subprocess.run(["git", "archive", "HEAD"], cwd=ROOT, check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    else:
        listing = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                                 capture_output=True).stdout.decode().split("\0")
        for name in filter(None, listing):
            if (ROOT / name).is_file():
                (target / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / name, target / name)
    return target


def pytest(copy: Path, tests: tuple[str, ...]) -> tuple[int, str]:
    env = {**os.environ, "PYTHONPATH": str(copy), "PYTHONDONTWRITEBYTECODE": "1"}
    command = [sys.executable, "-m", "pytest", "-q", "-x", "-o", "addopts=", "-p", "no:cacheprovider", "-p", "no:nbval",
               "-W", "ignore::DeprecationWarning", *tests]
    try:
        done = subprocess.run(command, cwd=copy, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return -1, "timeout"
    return done.returncode, done.stdout[-2000:] + done.stderr[-2000:]


def check_imports(copy: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(copy)}
    where = subprocess.run([sys.executable, "-c", "import helpers; print(helpers.__file__)"], cwd=copy,
                           env=env, capture_output=True, text=True, check=True).stdout.strip()
    if not Path(where).resolve().is_relative_to(copy.resolve()):
        raise SystemExit(f"the scratch copy's helpers is not the one imported: {where}")


def stale_rows(copy: Path, rows: list[Mutation]) -> list[str]:
    """Rows whose original text is not exactly once in the copy's file."""
    stale = []
    for m in rows:
        path = copy / m.file
        count = path.read_text().count(m.original) if path.is_file() else 0
        if count != 1:
            stale.append(f"{m.name}: original text found {count} times in {m.file}")
    return stale


def apply(copy: Path, mutation: Mutation) -> str:
    path = copy / mutation.file
    text = path.read_text()
    count = text.count(mutation.original)
    if count != 1:
        raise SystemExit(f"{mutation.name}: original text found {count} times in {mutation.file} (stale row)")
    path.write_text(text.replace(mutation.original, mutation.replacement))
    return text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", nargs="*", help="areas to run (default: all tables)")
    parser.add_argument("--only", nargs="*", help="mutation names to run (default: all)")
    parser.add_argument("--source", choices=("head", "worktree"), default="head")
    parser.add_argument("--list", action="store_true", help="print the table and exit")
    parser.add_argument("--keep", action="store_true", help="keep the scratch copy")
    args = parser.parse_args(argv)
    available = tables()
    unknown_tables = set(args.table or ()) - set(available)
    if unknown_tables:
        raise SystemExit(f"unknown table(s) {sorted(unknown_tables)}; known: {sorted(available)}")
    rows = [m for area, table in available.items() if not args.table or area in args.table for m in table]
    names = [m.name for m in rows]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise SystemExit(f"mutation names must be unique: {duplicates}")
    chosen = [m for m in rows if not args.only or m.name in args.only]
    unknown = set(args.only or ()) - set(names)
    if unknown:
        raise SystemExit(f"unknown mutation(s): {sorted(unknown)}")
    if args.list:
        for m in chosen:
            print(f"{m.name}: {m.file}: {m.original.strip()!r} -> {m.replacement.strip()!r}; {', '.join(m.tests)}")
        return 0
    copy = scratch_copy(args.source)
    try:
        check_imports(copy)
        stale = stale_rows(copy, chosen)
        if stale:
            print("stale rows (fix the table, or use --source worktree for uncommitted code):", *stale,
                  sep="\n  ", file=sys.stderr)
            return 2
        baseline = tuple(dict.fromkeys(t for m in chosen for t in m.tests))
        code, output = pytest(copy, baseline)
        if code != 0:
            print(output)
            print("the tests fail on the unmutated copy: fix them first", file=sys.stderr)
            return 2
        survived = []
        for mutation in chosen:
            original = apply(copy, mutation)
            start = time.monotonic()
            try:
                code, output = pytest(copy, mutation.tests)
            finally:
                (copy / mutation.file).write_text(original)
            if code == 1 or code == -1:
                verdict = "killed" if code == 1 else "killed (timeout)"
            elif code == 0:
                verdict = "survived"
                survived.append(mutation.name)
            else:
                print(output)
                verdict = f"error (pytest exit {code})"
                survived.append(mutation.name)
            print(f"{mutation.name} -> {verdict}  [{time.monotonic() - start:.1f}s; {', '.join(mutation.tests)}]",
                  flush=True)
        print(f"{len(chosen) - len(survived)} of {len(chosen)} mutations killed")
        return 1 if survived else 0
    finally:
        if args.keep:
            print(f"scratch copy kept at {copy}")
        else:
            shutil.rmtree(copy, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
