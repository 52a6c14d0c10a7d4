"""The transposed-convolution benchmark runs (a smoke test, one call per contender, outside the timing it
exists for)."""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "conv_transpose.py"
PEERS = {"Flax linen": "flax", "Equinox": "equinox", "PyTorch eager": "torch"}
HEADER = "| input → features | kernel | implementation | ms | spread | vs PyTorch eager | compile s |"


def run(*args: str, timeout: int) -> subprocess.CompletedProcess:
    command = [sys.executable, str(SCRIPT), *args]
    return subprocess.run(command, capture_output=True, text=True, encoding="utf-8", timeout=timeout)


@pytest.mark.slow
def test_the_transposed_convolution_benchmark_checks_and_times_every_installed_contender(tmp_path):
    """Both kernels (the 3x3 one checks PyTorch's one-pixel shift), both modes, the smallest size: about
    10 s on one core, most of it imports and the JAX peers' 3x3 weight gradient."""
    out = tmp_path / "conv_transpose.md"
    done = run(
        "--batch", "1", "--repeats", "1", "--iters", "1", "--sizes", "0", "--out", str(out), timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    tables = out.read_text(encoding="utf-8")
    assert tables.strip() in done.stdout
    assert tables.startswith("forward (the forward pass): ") and "\ntrain (the gradient of " in tables
    assert tables.count(HEADER) == 2
    rows = {}
    for line in tables.splitlines():
        match = re.match(r"^\| 8×8×512 → 256 \| (2×2/2|3×3/2 SAME) \| ([^|]+) \| (\d+\.\d\d) \| ", line)
        if match:
            rows.setdefault((match[1], match[2].strip()), []).append(line)
    expected = {"funcnn", "funcnn autodiff"}
    expected |= {name for name, package in PEERS.items() if importlib.util.find_spec(package)}
    assert set(rows) == {(kernel, name) for kernel in ("2×2/2", "3×3/2 SAME") for name in expected}, tables
    assert all(len(lines) == 2 for lines in rows.values()), rows  # a forward and a train row each
    if "PyTorch eager" in expected:
        for (_, name), lines in rows.items():
            for line in lines:
                assert re.search(r"\| \d+\.\d\dx \| \d+\.\d\d \|$", line), line
                assert name != "PyTorch eager" or "| 1.00x |" in line, line


def test_the_transposed_convolution_benchmark_refuses_an_unknown_size():
    done = run("--sizes", "4", timeout=120)
    assert done.returncode == 2 and "--sizes takes indices 0-3, got ['4']" in done.stderr
