"""Run each atheris fuzz target for a while; exit 1 when any of them finds something.

    python fuzz/run.py --seconds 60                  # both targets, 60 s each
    python fuzz/run.py --seconds 5 path/to/target.py # any other atheris target

Each target runs in its own process under libFuzzer with its seeds (``fuzz/seeds/<name>``)
and dictionary (``fuzz/<name>.dict``) when they exist; what it learns is kept in
``<work>/<name>/corpus`` so the next run starts from there, and an input that breaks a
target is saved in ``<work>/<name>/findings`` with the command that replays it.

atheris ships wheels only for x86-64 Linux; elsewhere pip builds it with clang and its
libFuzzer. Without it the runner says so in one line and runs the Hypothesis properties
under ``HYPOTHESIS_PROFILE=fuzz`` instead (20,000 examples each, 7 to 11 minutes here;
``--seconds`` does not apply there).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

FUZZ_DIR = Path(__file__).resolve().parent
REPO = FUZZ_DIR.parent
TARGETS = (FUZZ_DIR / "contract_target.py", FUZZ_DIR / "csv_records_target.py")
HYPOTHESIS_FALLBACK = ("tests/test_properties.py", "tests/test_size_limits.py")
# A CSV input must be able to pass the reader's 8 KiB record limit; a slow input is a finding.
LIBFUZZER_FLAGS = ("-max_len=20000", "-timeout=10", "-rss_limit_mb=2048", "-print_final_stats=1")
EXIT_FINDING = 1
EXECUTIONS = re.compile(r"stat::number_of_executed_units:\s*(\d+)")


@dataclass(frozen=True)
class Outcome:
    """How one target's run ended: libFuzzer's exit status, the input count, the input it saved if any."""

    target: Path
    status: int
    executions: int
    finding: Path | None
    output: str


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if importlib.util.find_spec("atheris") is None:
        print(
            "fuzz: atheris is not installed (pip install atheris: wheels for x86-64 Linux, else clang to build); "
            "running the Hypothesis properties with HYPOTHESIS_PROFILE=fuzz instead",
            flush=True,
        )
        return run_hypothesis_fuzz_profile()
    outcomes = [run_target(target, args.seconds, args.work) for target in args.targets]
    for outcome in outcomes:
        report(outcome)
    return EXIT_FINDING if any(outcome.status for outcome in outcomes) else 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python fuzz/run.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=60, help="how long each target runs (default: %(default)s)")
    parser.add_argument(
        "--work",
        type=Path,
        default=Path(os.environ.get("DRONECOP_HOME") or REPO / ".dronecop") / "fuzz",
        help="where corpora and findings are kept (default: %(default)s)",
    )
    parser.add_argument("targets", nargs="*", type=Path, default=list(TARGETS), help="atheris targets (default: both)")
    return parser.parse_args(argv)


def run_target(target: Path, seconds: int, work: Path) -> Outcome:
    """One target under libFuzzer for ``seconds``; a non-zero exit means it saved a finding."""
    name = target.stem.removesuffix("_target")
    corpus, findings = work / name / "corpus", work / name / "findings"
    corpus.mkdir(parents=True, exist_ok=True)
    findings.mkdir(parents=True, exist_ok=True)
    before = set(findings.iterdir())
    argv = [sys.executable, str(target), f"-max_total_time={seconds}", f"-artifact_prefix={findings}/", *LIBFUZZER_FLAGS]
    dictionary = FUZZ_DIR / f"{name}.dict"
    argv += [f"-dict={dictionary}"] if dictionary.is_file() else []
    argv += [str(corpus)] + [str(seeds) for seeds in [FUZZ_DIR / "seeds" / name] if seeds.is_dir()]
    completed = subprocess.run(
        argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace", timeout=seconds + 300
    )
    output = completed.stdout
    executions = int(match.group(1)) if (match := EXECUTIONS.search(output)) else 0
    saved = sorted(set(findings.iterdir()) - before, key=lambda path: path.stat().st_mtime)
    return Outcome(target, completed.returncode, executions, saved[-1] if saved else None, output)


def report(outcome: Outcome) -> None:
    """One line per target; after a finding, the target's own account of it on stderr."""
    name = outcome.target.stem
    if outcome.status == 0:
        print(f"fuzz: {name}: no finding in {outcome.executions:,} inputs", flush=True)
        return
    if outcome.finding is None:
        print(f"fuzz: {name}: exited with status {outcome.status} without saving an input", flush=True)
    else:
        print(
            f"fuzz: {name}: FINDING, input saved as {outcome.finding}; replay: {sys.executable} {outcome.target} {outcome.finding}",
            flush=True,
        )
    lines = outcome.output.splitlines()
    first = next((index for index, line in enumerate(lines) if "=== Uncaught Python exception" in line), len(lines) - 20)
    last = next((index for index, line in enumerate(lines) if line.startswith("SUMMARY:")), len(lines))
    sys.stderr.write("\n".join(lines[max(first, 0) : last + 1]) + "\n")


def run_hypothesis_fuzz_profile() -> int:
    """The fallback: the property tests with many more examples, exit status as pytest's."""
    command = [sys.executable, "-m", "pytest", "-q", *HYPOTHESIS_FALLBACK]
    completed = subprocess.run(command, cwd=REPO, env={**os.environ, "HYPOTHESIS_PROFILE": "fuzz"})
    return 0 if completed.returncode == 0 else EXIT_FINDING


if __name__ == "__main__":
    sys.exit(main())
