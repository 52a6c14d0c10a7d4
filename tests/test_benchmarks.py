"""The benchmarks run (a smoke test each, a few steps, outside the timing they exist for)."""

import subprocess
import sys
from pathlib import Path

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
