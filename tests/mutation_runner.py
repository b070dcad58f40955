"""Run the curated mutations of tests/mutations.py: each breaks one line of the product on purpose,
in a copy of the tree, and the tests named for it must fail.

    python -m tests.mutation_runner [--only NAME ...] [--jobs N] [--no-baseline] [--list]

A line per mutation, then the last line, one JSON object:
{"mutations": N, "caught": C, "survived": [names], "errors": [names]}. Exit status 1 when any
mutation survived or could not be run (its original text not found exactly once, or its tests
did not run).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.mutations import MUTATIONS, Mutation

ROOT = Path(__file__).resolve().parent.parent
# Not copied: the virtual environment, version control, the embedded database, caches.
IGNORED = shutil.ignore_patterns(".venv", ".git", ".antaca", "__pycache__", ".pytest_cache",
                                 ".hypothesis", "*.pyc", ".mypy_cache", ".ruff_cache")
TIMEOUT_SECONDS = 900
# pytest's exit codes: 0 all passed, 1 some failed; anything else (interrupted, a collection or
# usage error, nothing collected) means the tests did not run as named.
PASSED, FAILED = 0, 1


class MutationError(Exception):
    """A mutation that cannot be applied or whose tests did not run: neither caught nor survived."""


@dataclass(frozen=True)
class Outcome:
    mutation: Mutation
    status: str  # "caught", "survived" or "error"
    seconds: float
    detail: str = ""


def copy_tree(destination: Path) -> Path:
    tree = destination / "tree"
    shutil.copytree(ROOT, tree, ignore=IGNORED, symlinks=True)
    return tree


def apply(mutation: Mutation, tree: Path) -> None:
    """Replace the mutation's original text, which must occur exactly once, in the copy."""
    path = tree / mutation.path
    if not path.is_file():
        raise MutationError(f"{mutation.path}: no such file")
    text = path.read_text()
    found = text.count(mutation.original)
    if found != 1:
        raise MutationError(f"{mutation.path}: the original text occurs {found} times, not once: "
                            f"{mutation.original!r}")
    path.write_text(text.replace(mutation.original, mutation.replacement))


def run_tests(tree: Path, node_ids: tuple[str, ...]) -> subprocess.CompletedProcess:
    """pytest on the named tests inside the copy, importing the copy's code first."""
    environment = {**os.environ, "PYTHONPATH": str(tree), "PYTHONDONTWRITEBYTECODE": "1"}
    # -x: the first failure is enough to call the mutation caught.
    command = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
               "-o", "addopts=", *node_ids]
    return subprocess.run(command, cwd=tree, env=environment, capture_output=True, text=True,
                          timeout=TIMEOUT_SECONDS)


def check_imports_from(tree: Path) -> None:
    """The copy's packages, not an installed copy of the product, must be the ones imported."""
    environment = {**os.environ, "PYTHONPATH": str(tree)}
    probe = subprocess.run(
        [sys.executable, "-c", "import antaca_auth, antaca_api; print(antaca_auth.__file__); "
                               "print(antaca_api.__file__)"],
        cwd=tree, env=environment, capture_output=True, text=True, check=True)
    for line in probe.stdout.split():
        if not Path(line).resolve().is_relative_to(tree.resolve()):
            raise SystemExit(f"the tests would import {line}, not the copy under {tree}")


def tail(result: subprocess.CompletedProcess, lines: int = 15) -> str:
    return "\n".join((result.stdout + result.stderr).strip().splitlines()[-lines:])


def run_one(mutation: Mutation) -> Outcome:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"antaca-mutation-{mutation.name}-") as scratch:
        try:
            tree = copy_tree(Path(scratch))
            apply(mutation, tree)
            try:
                result = run_tests(tree, mutation.tests)
            except subprocess.TimeoutExpired:
                # A test that hangs under the mutation is noticed too: the suite never finishes.
                return Outcome(mutation, "caught", time.monotonic() - started, "timed out")
            if result.returncode == FAILED:
                return Outcome(mutation, "caught", time.monotonic() - started)
            if result.returncode == PASSED:
                return Outcome(mutation, "survived", time.monotonic() - started, tail(result))
            raise MutationError(f"pytest exited {result.returncode}:\n{tail(result)}")
        except MutationError as error:
            return Outcome(mutation, "error", time.monotonic() - started, str(error))


def baseline(mutations: list[Mutation]) -> None:
    """Every named test passes on the unmutated tree; otherwise a failure would count as caught."""
    node_ids = sorted({node for m in mutations for node in m.tests})
    with tempfile.TemporaryDirectory(prefix="antaca-mutation-baseline-") as scratch:
        tree = copy_tree(Path(scratch))
        check_imports_from(tree)
        for mutation in mutations:  # fail loudly on a stale original before spending minutes
            text = (tree / mutation.path).read_text() if (tree / mutation.path).is_file() else ""
            if text.count(mutation.original) != 1:
                raise SystemExit(f"{mutation.name}: the original text does not occur exactly once "
                                 f"in {mutation.path}: {mutation.original!r}")
        result = run_tests(tree, tuple(node_ids))
        if result.returncode != PASSED:
            raise SystemExit(f"the named tests fail without any mutation:\n{tail(result, 40)}")
    print(f"baseline: {len(node_ids)} named tests pass unmutated", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these mutations")
    parser.add_argument("--jobs", type=int, default=1, help="mutations run at once (default 1)")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip checking that the named tests pass unmutated")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    options = parser.parse_args(argv)
    names = [m.name for m in MUTATIONS]
    if len(set(names)) != len(names):
        raise SystemExit("two mutations share a name")
    chosen = list(MUTATIONS)
    if options.only:
        unknown = set(options.only) - set(names)
        if unknown:
            raise SystemExit(f"no such mutation: {sorted(unknown)}")
        chosen = [m for m in MUTATIONS if m.name in options.only]
    if options.list:
        for m in chosen:
            print(f"{m.name}: {m.path}: {m.why}")
        return 0
    if not options.no_baseline:
        baseline(chosen)
    outcomes = []
    with concurrent.futures.ThreadPoolExecutor(max(1, options.jobs)) as pool:
        for outcome in pool.map(run_one, chosen):
            outcomes.append(outcome)
            line = f"{outcome.status.upper():9} {outcome.mutation.name} ({outcome.seconds:.0f} s)"
            print(line + (f"\n{outcome.detail}" if outcome.status != "caught" and outcome.detail
                          else ""), flush=True)
    survived = [o.mutation.name for o in outcomes if o.status == "survived"]
    errors = [o.mutation.name for o in outcomes if o.status == "error"]
    caught = sum(o.status == "caught" for o in outcomes)
    print(json.dumps({"mutations": len(outcomes), "caught": caught, "survived": survived,
                      "errors": errors}))
    return 1 if survived or errors else 0


if __name__ == "__main__":
    sys.exit(main())
