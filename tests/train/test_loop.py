"""The pure training loop: records out, no files, divergence named, the mode chosen."""

import jax
import numpy as np
import optax
import pytest

from funcnn import distributed
from funcnn.data import batch_indices
from funcnn.train import DEFAULT_LOSS, NonFiniteLossError, init_train_state
from funcnn.train.loop import (
    DIVERGENCE_BOUND,
    check_diverged,
    choose_mode,
    compiled_epoch_or_step,
    epoch_runner,
    train_epochs,
)


@pytest.mark.parametrize("mode", ["scan", "loop"])
def test_train_epochs_yields_records_and_writes_nothing(model, train_data, tmp_path, monkeypatch, mode):
    monkeypatch.chdir(tmp_path)
    optimizer = optax.adam(1e-2)
    images, labels = train_data
    mesh = distributed.data_mesh()
    state = init_train_state(model, optimizer, jax.random.key(0), (-1, 6, 6))
    compiled = compiled_epoch_or_step(model, DEFAULT_LOSS, optimizer, _scale, None, mode, mesh)
    progress = []
    records = list(
        train_epochs(
            epoch_runner(compiled, images, labels, mode, mesh),
            state,
            first_epoch=0,
            epochs=2,
            plan=lambda epoch: batch_indices(1, epoch, len(images), 16),
            batch_size=16,
            evaluate_test=lambda s: {"loss": None, "accuracy": None},
            on_progress=lambda steps, metrics: progress.append(steps),
            mode=mode,
            devices=mesh.size,
        )
    )
    assert [r["epoch"] for _, r in records] == [1, 2] and records[-1][1]["step"] == 12
    assert records[-1][1]["devices"] == 4
    assert sum(progress) == 12 and list(tmp_path.iterdir()) == []
    assert len(progress) == 12  # six steps an epoch: the scan reports each of its chunks, the loop each step
    assert records[-1][1]["train_loss"] < records[0][1]["train_loss"]


def _scale(images):
    return images.astype(np.float32) / 255.0


@pytest.mark.parametrize("loss", [np.nan, np.inf, 10 * DIVERGENCE_BOUND])
def test_divergence_names_epoch_and_step(loss):
    with pytest.raises(NonFiniteLossError, match=r"training diverged: loss .* \(bound 1e\+06\) at epoch 3, step 7 "):
        check_diverged(np.array([1.0, loss, 2.0]), epoch=2, first_step=5)
    check_diverged(np.array([1.0, DIVERGENCE_BOUND]), epoch=0, first_step=0)


def test_choose_mode_keeps_an_explicit_mode():
    device = jax.devices()[0]
    assert choose_mode("loop", 10, device) == "loop"
    assert choose_mode("auto", 10, device) == "scan"
