"""The run's output folder: resume, the run record, epoch writes, progress and epoch lines."""

import json
import warnings

import jax
import jax.numpy as jnp
import optax
import pytest

from funcnn import checkpoint
from funcnn.train import NonFiniteLossError, abstract_train_state, fit, init_train_state
from funcnn.train import run as run_folder

OPTIMIZER = optax.adam(1e-2)


def _fit(model, data, out, **kwargs):
    options = {"optimizer": OPTIMIZER, "epochs": 2, "batch_size": 16, "seed": 3, "mode": "scan", "out": out}
    return fit(model, data, **(options | kwargs))


def test_record_run_is_atomic_json(tmp_path):
    run_folder.record_run(tmp_path / "o", {"epochs": 3})
    assert json.loads((tmp_path / "o" / run_folder.RUN_FILE).read_text()) == {"epochs": 3}
    assert not list((tmp_path / "o").glob("*.tmp"))


def test_write_epoch_never_saves_a_diverged_state(model, tmp_path):
    state = init_train_state(model, OPTIMIZER, jax.random.key(0), (-1, 6, 6))
    state = state._replace(params=jax.tree.map(lambda a: a.at[...].set(jnp.nan), state.params))
    with pytest.raises(NonFiniteLossError, match=r"training diverged in epoch 1: non-finite values in params"):
        run_folder.write_epoch(tmp_path, state, [], {"epoch": 1}, keep=1)
    assert not (tmp_path / "checkpoints").exists()


def test_a_kill_between_checkpoint_and_manifest_resumes_from_the_previous_epoch(
    model, train_data, tmp_path, monkeypatch
):
    reference = _fit(model, train_data, tmp_path / "ref")
    out = tmp_path / "run"
    write_manifest = checkpoint._write_manifest

    def killed_on_the_second(folder):
        if folder.name != "12":  # the second epoch's checkpoint
            return write_manifest(folder)
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "_write_manifest", killed_on_the_second)
    with pytest.raises(KeyboardInterrupt):
        _fit(model, train_data, out)
    monkeypatch.undo()
    assert checkpoint.all_steps(out / "checkpoints") == [6, 12]
    assert checkpoint.latest_intact_step(out / "checkpoints")[0] == 6
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resumed = _fit(model, train_data, out, resume=True)
    messages = [str(w.message) for w in caught if issubclass(w.category, checkpoint.DamagedCheckpointWarning)]
    assert len(messages) == 1 and messages[0].startswith("checkpoint step 12 is damaged (it has no funcnn-manifest.json")
    assert (out / checkpoint.DAMAGED / "12").is_dir()
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in reference.history]


def test_progress_bar_counts_steps_and_epoch_lines_read_well(capsys):
    bar, on_progress = run_folder.progress_bar(10, 2, 16, enabled=True)
    metrics = type("M", (), {"loss": jnp.ones(3), "accuracy": jnp.ones(3) / 2})()
    on_progress(3, metrics)
    assert bar.n == 5
    line = run_folder.epoch_line(
        {"epoch": 1, "train_loss": 0.5, "train_accuracy": 0.8, "test_loss": None, "test_accuracy": None,
         "seconds": 2.0, "images_per_second": 100.0}, 3)  # fmt: skip
    assert line == "epoch 1/3: train loss 0.5000 acc 0.8000, 2.0 s, 100 img/s"


def test_resume_cuts_metrics_back_to_the_restored_history(model, train_data, tmp_path):
    out = tmp_path / "run"
    _fit(model, train_data, out, epochs=1)
    (out / "metrics.jsonl").write_text((out / "metrics.jsonl").read_text() * 3)
    target = abstract_train_state(model, OPTIMIZER, (-1, 6, 6))
    state, history = run_folder.resume(out, target, resume=True, seed=3, batch_size=16)
    assert len(history) == 1 and len((out / "metrics.jsonl").read_text().splitlines()) == 1
