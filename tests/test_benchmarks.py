"""The benchmarks run (a smoke test each, a few steps, outside the timing they exist for)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from funcnn.data.fashion_mnist import DEFAULT_DIR

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_scaling_reports_every_count_as_a_ratio_to_one():
    command = [sys.executable, str(BENCHMARKS / "scaling.py"), "--devices", "1", "2", "--batch", "8"]
    command += ["--precision", "fp32", "bf16", "--steps", "2", "--windows", "1", "--repeats", "1"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {tuple(line.split()[:2]): line.split() for line in done.stdout.splitlines() if "  fp32 " in line
            or "  bf16 " in line}  # fmt: skip
    assert rows["fp32", "1"][-1] == rows["bf16", "1"][-1] == "1.00" and float(rows["fp32", "2"][-1]) > 0
    assert "bf16 / fp32 on 2 device(s): " in done.stdout
    assert "virtual CPU devices: a real speed-up up to" in done.stdout


@pytest.mark.slow
def test_the_peer_benchmark_runs_every_installed_implementation_for_two_steps(tmp_path):
    command = [sys.executable, str(BENCHMARKS / "peers" / "run.py"), "--models", "fashion_cnn", "--batch", "8"]
    command += ["--steps", "2", "--windows", "1", "--repeats", "1", "--json", str(tmp_path / "r.json")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    results = {(r["row"], r["mode"]): r for r in json.loads((tmp_path / "r.json").read_text())}
    assert {("funcnn", "step"), ("funcnn", "scan"), ("funcnn", "infer"), ("raw JAX", "step")} <= set(results)
    assert all(r["rates"] and r["rates"][0] > 0 for r in results.values()), done.stdout
    assert re.search(r"^funcnn +step +\d+ +\d+", done.stdout, re.MULTILINE) and "vs torch" in done.stdout


@pytest.mark.slow
@pytest.mark.skipif(not DEFAULT_DIR.is_dir(), reason="dataset-fashion-mnist is not installed")
def test_time_to_accuracy_runs_an_epoch_of_each():
    command = [sys.executable, str(BENCHMARKS / "peers" / "time_to_accuracy.py"), "--epochs", "1", "--limit", "512"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines()[-2].startswith("to 91%: funcnn")
    assert "funcnn  e1 " in done.stdout
