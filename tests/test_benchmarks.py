"""The benchmarks run (a smoke test each, a few steps, outside the timing they exist for)."""

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from funcnn.data.fashion_mnist import DEFAULT_DIR
from funcnn.runtime import CPU_CONVOLUTIONS, HUGE_PAGES

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.slow
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
def test_the_peer_benchmark_runs_every_installed_implementation_for_a_few_steps(tmp_path):
    """Twenty steps: a window of two (about 2 ms for torch.compile inference) is too short for a CPU-use
    reading, which came out above the core count once PyTorch was installed with the tests."""
    command = [
        sys.executable,
        str(BENCHMARKS / "peers" / "run.py"),
        "--models",
        "fashion_cnn",
        "--batch",
        "8",
    ]
    command += ["--steps", "20", "--windows", "1", "--repeats", "1", "--out", str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    results = {(r["row"], r["mode"]): r for r in json.loads((tmp_path / "results.json").read_text())}
    assert {("funcnn", "step"), ("funcnn", "scan"), ("funcnn", "infer"), ("raw JAX", "step")} <= set(results)
    for result in results.values():
        (run,) = result["runs"]
        assert run["images_per_second"] > 0 and run["compile_seconds"] > 0, result
        assert 0 < run["cpu_use"] <= os.cpu_count() + 0.5 and run["peak_mib"] > 50, result
    table = (tmp_path / "results.md").read_text()
    assert table.strip() in done.stdout and table.startswith("fashion_cnn: batch 8, ")
    assert "| implementation | mode | devices | images/s | spread | vs PyTorch eager |" in table
    assert re.search(r"^\| funcnn \| step \| \d \| [\d,]+ \| [\d,]+–[\d,]+ \|", table, re.MULTILINE), table
    assert (tmp_path / "results.png").read_bytes().startswith(b"\x89PNG")


WORKER_ENV = """
import json, sys
sys.path.insert(0, sys.argv[1])
from run import AS_FUNCNN_TRAIN, worker_env
print(json.dumps([worker_env(2, AS_FUNCNN_TRAIN), worker_env(1, ())]))
"""


def test_each_worker_gets_its_own_settings_and_nothing_of_the_callers():
    """funcnn's rows start as ``funcnn train`` starts; a peer's start without funcnn's settings, even
    when the caller's environment has them (a device count, the convolution flag, glibc tunables)."""
    env = dict(
        os.environ,
        GLIBC_TUNABLES="glibc.malloc.arena_max=2",
        JAX_NUM_CPU_DEVICES="8",
        XLA_FLAGS="--xla_force_host_platform_device_count=8 --xla_cpu_experimental_ynn_fusion_type=x "
        "--xla_cpu_use_thunk_runtime=true",
    )
    command = [sys.executable, "-c", WORKER_ENV, str(BENCHMARKS / "peers")]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    funcnn, peer = json.loads(done.stdout)
    assert funcnn["GLIBC_TUNABLES"] == HUGE_PAGES and "GLIBC_TUNABLES" not in peer
    assert funcnn["XLA_FLAGS"].split() == ["--xla_cpu_use_thunk_runtime=true", CPU_CONVOLUTIONS]
    assert peer["XLA_FLAGS"].split() == ["--xla_cpu_use_thunk_runtime=true"]
    assert (funcnn["JAX_NUM_CPU_DEVICES"], peer["JAX_NUM_CPU_DEVICES"]) == ("2", "1")


def test_the_peer_benchmark_refuses_an_unknown_row():
    run = [sys.executable, str(BENCHMARKS / "peers" / "run.py")]
    done = subprocess.run([*run, "--impls", "funcnn", "Torch"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "unknown rows ['Torch']; the rows are ['funcnn', " in done.stderr


@pytest.mark.slow
@pytest.mark.skipif(not DEFAULT_DIR.is_dir(), reason="dataset-fashion-mnist is not installed")
def test_time_to_accuracy_runs_an_epoch_of_each():
    command = [
        sys.executable,
        str(BENCHMARKS / "peers" / "time_to_accuracy.py"),
        "--epochs",
        "1",
        "--limit",
        "512",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines()[-2].startswith("to 91%: funcnn")
    assert "funcnn  e1 " in done.stdout
    for peer, label in [("flax", "Flax linen"), ("torch", "PyTorch")]:
        if importlib.util.find_spec(peer):
            assert re.search(rf"^{peer} +e1 \d+s 0\.\d{{4}}$", done.stdout, re.MULTILINE), done.stdout
            assert f"(funcnn / {label} " in done.stdout


@pytest.mark.slow
def test_the_op_table_times_every_new_rule_against_autodiff_and_pytorch():
    command = [sys.executable, str(BENCHMARKS / "vjp_vs_autodiff.py"), "--only", "ops", "--batch", "2"]
    done = subprocess.run([*command, "--repeats", "1"], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [
        line for line in done.stdout.splitlines() if re.match(r"^(relu6|adaptive|upsample|standardize)", line)
    ]
    assert len(rows) >= 8, done.stdout
    for row in rows:
        assert re.search(r"\d+\.\d\dx", row), row  # the autodiff / custom ratio
