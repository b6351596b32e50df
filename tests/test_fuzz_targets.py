"""The atheris targets run clean for a few seconds, and the runner turns a finding into exit 1.

Seconds of fuzzing find little on their own; these tests keep the targets and the runner
working, so ``python fuzz/run.py --seconds 600`` is ready when someone wants a long hunt.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RUNNER = REPO / "fuzz" / "run.py"
SECONDS = 2

pytestmark = pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris is not installed (pip install atheris)")

PLANTED_BUG = """
import sys
import atheris


def test_one_input(data: bytes) -> None:
    if data[:1] == b"!":
        raise ValueError("the planted bug")


atheris.Setup(sys.argv, test_one_input)
atheris.Fuzz()
"""


def run_fuzz(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(RUNNER), *args], capture_output=True, text=True, timeout=180)


def test_both_targets_run_clean(tmp_path: Path) -> None:
    run = run_fuzz("--seconds", str(SECONDS), "--work", str(tmp_path))
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert [line.split(":")[1].strip() for line in lines] == ["contract_target", "csv_records_target"]
    for line in lines:
        inputs = int(line.rsplit(" in ", 1)[1].split()[0].replace(",", ""))
        assert "no finding" in line and inputs > 1000, line
    assert any((tmp_path / "csv_records" / "corpus").iterdir()), "libFuzzer kept no corpus to start from next time"


def test_a_finding_exits_1_and_saves_an_input_that_replays(tmp_path: Path) -> None:
    target = tmp_path / "planted_target.py"
    target.write_text(PLANTED_BUG)
    run = run_fuzz("--seconds", "30", "--work", str(tmp_path / "work"), str(target))
    assert run.returncode == 1, run.stdout + run.stderr
    assert run.stdout.startswith("fuzz: planted_target: FINDING, input saved as ") and "the planted bug" in run.stderr
    saved = Path(run.stdout.split("input saved as ", 1)[1].split(";", 1)[0])
    assert saved.read_bytes()[:1] == b"!"
    replay = subprocess.run([sys.executable, str(target), str(saved)], capture_output=True, text=True, timeout=60)
    assert replay.returncode != 0 and "the planted bug" in replay.stdout + replay.stderr
