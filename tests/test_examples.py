"""The examples run (they are documentation, and documentation must not rot)."""

import importlib.util
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["shapes_tour", "classic_filters"])
def test_example_runs(name, capsys):
    load(name).main()
    assert capsys.readouterr().out


@pytest.mark.standard_promotion
def test_training_example_lowers_the_loss(capsys):
    final = load("train_synthetic").main(steps=30)
    first = float(capsys.readouterr().out.splitlines()[0].split()[-1])
    assert final < first
