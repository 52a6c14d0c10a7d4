"""The examples run (they are documentation, and documentation must not rot)."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from funcnn.data.fashion_mnist import DEFAULT_DIR

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
HAS_DATA = DEFAULT_DIR.is_dir() or "FUNCNN_DATA" in os.environ


def load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_example_has_a_smoke_test():
    tested = {"shapes_tour", "classic_filters", "train_synthetic", "train_fashion_mnist", "custom_gradient"}
    tested |= {"resnet_summary", "sharded_training", "own_data_npz", "unet_denoise"}
    assert {path.stem for path in EXAMPLES.glob("*.py")} == tested


def test_shapes_tour(capsys):
    load("shapes_tour").main()
    assert capsys.readouterr().out


def test_classic_filters_draws_every_response(tmp_path, capsys):
    responses = load("classic_filters").main(str(tmp_path / "filters.png"))
    assert set(responses) == {
        "sobel(0)",
        "sobel(1)",
        "gaussian(5, 1.0)",
        "sharpen()",
        "laplacian()",
        "box_blur(3)",
    }
    assert all(response.shape == (28, 28) for response in responses.values())
    assert (tmp_path / "filters.png").read_bytes().startswith(b"\x89PNG")
    assert "filters on " in capsys.readouterr().out


@pytest.mark.standard_promotion
def test_training_example_lowers_the_loss(capsys):
    final = load("train_synthetic").main(steps=30)
    first = float(capsys.readouterr().out.splitlines()[0].split()[-1])
    assert final < first


@pytest.mark.slow
@pytest.mark.skipif(not HAS_DATA, reason="dataset-fashion-mnist is not installed")
def test_fashion_mnist_example_learns_in_one_short_epoch(capsys):
    accuracy = load("train_fashion_mnist").main(epochs=1, limit=2048)
    assert accuracy > 0.5  # ten classes: chance is 10%
    assert "epoch  1  train loss" in capsys.readouterr().out


def test_custom_gradient_example_passes_the_right_rule_and_catches_the_wrong_one(capsys):
    report = load("custom_gradient").main()
    assert "check_vjp: `wrong_softplus` disagrees with central finite differences" in report
    assert "agrees with autodiff and with finite differences" in capsys.readouterr().out


def test_resnet_summary_example(capsys):
    assert load("resnet_summary").main() == 272_474
    out = capsys.readouterr().out
    assert "trainable params: 272,474" in out and "logits (8, 10)" in out


def test_sharded_training_example_runs_on_four_devices():
    """In its own process: the example sets the device count before JAX starts."""
    env = {key: value for key, value in os.environ.items() if key != "XLA_FLAGS"}
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "sharded_training.py")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "4 devices, mesh {'data': 4}" in done.stdout and "epoch 2  on 4 devices" in done.stdout


@pytest.mark.slow
def test_own_data_example_learns_the_stripes(tmp_path, capsys):
    accuracy = load("own_data_npz").main(str(tmp_path), epochs=2)
    assert (tmp_path / "my_data.npz").is_file()
    assert accuracy > 0.8, capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.standard_promotion
@pytest.mark.skipif(not HAS_DATA, reason="dataset-fashion-mnist is not installed")
def test_unet_example_removes_noise_and_draws_the_pictures(tmp_path, capsys):
    """Sixteen steps are enough for the U-Net's output to be closer to the clean pictures than its input."""
    noisy, denoised = load("unet_denoise").main(epochs=1, limit=1024, out=str(tmp_path / "unet.png"))
    assert denoised < noisy / 2, (noisy, denoised)
    assert (tmp_path / "unet.png").read_bytes().startswith(b"\x89PNG")
    assert "test mse: noisy" in capsys.readouterr().out
