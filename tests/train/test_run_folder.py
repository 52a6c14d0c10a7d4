"""The run folder's one owner: inspection (each step hashed once), restore, settings, lock, writes."""

import json
import os
import shutil
import subprocess
import sys
import warnings

import jax
import jax.numpy as jnp
import optax
import pytest

from funcnn import checkpoint
from funcnn.checkpoint import Damage, WriteError
from funcnn.core import LayerConfigError
from funcnn.train import (
    Callback,
    Checkpoints,
    FolderInUseError,
    NonFiniteLossError,
    RunFolder,
    abstract_train_state,
    fit,
    init_train_state,
)
from funcnn.train.run_folder import best_indices, protected_steps

OPTIMIZER = optax.adam(1e-2)


def _fit(model, data, out, **kwargs):
    options = {"optimizer": OPTIMIZER, "epochs": 2, "batch_size": 16, "seed": 3, "mode": "scan", "out": out}
    return fit(model, data, **(options | kwargs))


def test_record_settings_is_atomic_json(tmp_path):
    folder = RunFolder(tmp_path / "o")
    folder.record_settings({"epochs": 3})
    assert json.loads(folder.settings_path.read_text()) == {"epochs": 3} == folder.settings()
    assert not list((tmp_path / "o").glob("*.tmp"))
    assert RunFolder(tmp_path / "none").settings() is None


@pytest.mark.parametrize("text", ["{not json", "[1, 2]"])
def test_an_unreadable_run_json_is_named(tmp_path, text):
    (tmp_path / "run.json").write_text(text)
    with pytest.raises(
        checkpoint.CheckpointMismatchError, match=r"run\.json: (unreadable|holds no settings)"
    ):
        RunFolder(tmp_path).settings()


def test_save_never_writes_a_diverged_state(model, tmp_path):
    state = init_train_state(model, OPTIMIZER, jax.random.key(0), (-1, 6, 6))
    state = state._replace(params=jax.tree.map(lambda a: a.at[...].set(jnp.nan), state.params))
    with pytest.raises(
        NonFiniteLossError, match=r"training diverged in epoch 1: non-finite values in params"
    ):
        RunFolder(tmp_path).save(state, [], {"epoch": 1}, keep=1)
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
    inspection = RunFolder(out).inspect()
    assert (inspection.intact, inspection.unfinished, inspection.damaged) == (6, (12,), ())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resumed = _fit(model, train_data, out, resume=True)
    messages = [str(w.message) for w in caught if issubclass(w.category, checkpoint.DamagedCheckpointWarning)]
    assert len(messages) == 1 and messages[0].startswith(
        "checkpoint step 12 is damaged (it has no funcnn-manifest.json"
    )
    assert (out / checkpoint.DAMAGED / "12").is_dir()
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in reference.history]


def test_restore_hands_back_the_template_when_there_is_nothing(model, tmp_path):
    template = abstract_train_state(model, OPTIMIZER, (-1, 6, 6))
    restored = RunFolder(tmp_path / "empty").restore(template)
    assert restored.state is template and restored.history == [] and restored.step is None


def test_resume_cuts_metrics_back_to_the_restored_history(model, train_data, tmp_path):
    out = tmp_path / "run"
    _fit(model, train_data, out, epochs=1)
    (out / "metrics.jsonl").write_text((out / "metrics.jsonl").read_text() * 3)
    _fit(model, train_data, out, epochs=1, resume=True)
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1


def test_each_step_is_hashed_at_most_once_per_folder(model, train_data, tmp_path, monkeypatch):
    out = tmp_path / "run"
    _fit(model, train_data, out, epochs=2, keep=3)
    hashed = []
    sha256 = checkpoint._sha256
    step_of = lambda path: path.relative_to(out / "checkpoints").parts[0]  # noqa: E731
    monkeypatch.setattr(checkpoint, "_sha256", lambda path: hashed.append(step_of(path)) or sha256(path))
    folder = RunFolder(out)
    for _ in range(3):
        assert folder.inspect().intact == 12
    folder.metadata(12)
    template = abstract_train_state(model, OPTIMIZER, (-1, 6, 6))
    folder.restore(template)
    files = len([p for p in (out / "checkpoints" / "12").rglob("*") if p.is_file()]) - 1  # not the manifest
    assert sorted(set(hashed)) == ["12"] and len(hashed) == files


def test_a_damaged_step_has_a_kind_not_just_a_sentence(model, train_data, tmp_path):
    out = tmp_path / "run"
    _fit(model, train_data, out, epochs=2)
    (out / "checkpoints" / "12" / "metadata" / "metadata").write_text("{}")
    inspection = RunFolder(out).inspect()
    assert inspection.intact == 6
    [(step, problem)] = inspection.damaged
    assert step == 12 and problem.kind in (Damage.TRUNCATED, Damage.ALTERED)


def test_a_second_writer_is_refused_naming_the_holder(tmp_path):
    folder = RunFolder(tmp_path / "o")
    with folder.lock():
        holder = json.loads((tmp_path / "o" / "run.lock").read_text())
        assert holder["pid"] == os.getpid()
        with pytest.raises(FolderInUseError, match=rf"o is in use by process {os.getpid()} on \S+ \(since "):
            RunFolder(tmp_path / "o").acquire()
        with folder.lock():  # re-entrant in its owner
            pass
    assert (tmp_path / "o").is_dir()  # the block did not fail: nothing removed
    with RunFolder(tmp_path / "o").lock():
        pass


def test_a_lock_left_by_a_dead_process_is_taken_over_with_a_warning(tmp_path):
    code = "import os, sys; from funcnn.train import RunFolder; RunFolder(sys.argv[1]).acquire(); os._exit(0)"
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "o")], check=True, timeout=120)
    with pytest.warns(
        checkpoint.DamagedCheckpointWarning, match=r"took over the lock left by process \d+ on "
    ):
        RunFolder(tmp_path / "o").acquire()


def test_a_run_that_fails_before_its_first_checkpoint_leaves_no_folder(tmp_path):
    with pytest.raises(RuntimeError), RunFolder(tmp_path / "new").lock():
        raise RuntimeError
    assert not (tmp_path / "new").exists()
    (tmp_path / "old").mkdir()
    with pytest.raises(RuntimeError), RunFolder(tmp_path / "old").lock():
        raise RuntimeError
    assert (tmp_path / "old").is_dir()  # not created by this run: left alone


def test_a_refused_writer_removes_nothing(tmp_path):
    holder = RunFolder(tmp_path / "o")
    holder.acquire()
    holder.record_settings({"epochs": 1})
    with pytest.raises(FolderInUseError), RunFolder(tmp_path / "o").lock():
        pass
    assert holder.settings() == {"epochs": 1}


def test_a_failed_write_names_the_path(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(WriteError, match=r"^cannot write \S+/file: File exists$"):
        RunFolder(tmp_path / "file").record_settings({"epochs": 1})


def test_a_path_that_is_not_utf8_is_refused_at_once(tmp_path):
    with pytest.raises(WriteError, match=r"^cannot write '\S+/r\\udcff': the name is not valid UTF-8"):
        RunFolder(os.fsdecode(bytes(tmp_path) + b"/r\xff"))


def test_without_the_lock_restore_moves_nothing_aside(model, train_data, tmp_path):
    """A reader (no lock) must not move a step that a run may be writing."""
    out = tmp_path / "run"
    _fit(model, train_data, out, epochs=2)
    (out / "checkpoints" / "12" / checkpoint.MANIFEST).unlink()  # as while its manifest is written
    template = abstract_train_state(model, OPTIMIZER, (-1, 6, 6))
    assert RunFolder(out).restore(template).step == 6
    assert (out / "checkpoints" / "12").is_dir() and not (out / checkpoint.DAMAGED).exists()


# --- the best checkpoint, kept besides the last `keep` ------------------------------------------


def _history(*accuracies):
    return [{"epoch": i + 1, "step": 10 * (i + 1), "test_accuracy": a} for i, a in enumerate(accuracies)]


@pytest.mark.parametrize(
    ("accuracies", "keep", "protected", "pruned"),
    [
        ((0.5, 0.9, 0.7, 0.6), 1, {20}, [10, 30]),  # the best, two epochs back, stays
        ((0.5, 0.9, 0.7, 0.6), 2, {20}, [10]),
        ((0.9, 0.5, 0.6, 0.95), 2, {10, 40}, [20]),  # epoch 3's checkpoint keeps its best (epoch 1)
        ((0.5, 0.6, 0.7), 1, {30}, [10, 20]),  # the newest is the best: nothing more is kept
        ((0.7, 0.7, 0.7), 1, {10}, [20]),  # of equal ones the earliest stays best
    ],
)
def test_the_best_step_of_every_kept_checkpoints_history_is_never_pruned(accuracies, keep, protected, pruned):
    history = _history(*accuracies)
    assert protected_steps(history, "test_accuracy", keep) == protected
    assert checkpoint.prunable([r["step"] for r in history], keep, protected) == pruned


def test_best_indices_follow_the_metrics_direction_and_min_delta():
    history = [{"test_loss": v, "test_accuracy": 1 - v} for v in (0.5, 0.45, 0.2, 0.19)]
    assert best_indices("w", history, "test_loss") == [0, 1, 2, 3]
    assert best_indices("w", history, "test_accuracy", min_delta=0.1) == [0, 0, 2, 2]


@pytest.mark.parametrize(
    ("monitor", "history", "match"),
    [
        ("epoch", [{"epoch": 1}], r"^w must name a loss or an accuracy of the epoch records .*got 'epoch'$"),
        (
            "test_accuracy",
            [{"epoch": 1, "test_accuracy": None}],
            r"^w 'test_accuracy': epoch 1's record has no value",
        ),
    ],
)
def test_a_monitor_that_is_no_metric_of_the_records_is_named(monitor, history, match):
    with pytest.raises(LayerConfigError, match=match):
        best_indices("w", history, monitor)


def test_a_save_killed_while_pruning_keeps_the_best_and_the_newest_step(tmp_path, monkeypatch):
    tree = {"w": jnp.ones(2)}
    for step in (1, 2, 3):
        checkpoint.save(tmp_path, step, tree, keep=5)
    removed, rmtree = [], shutil.rmtree

    def killed_after_one(path, **kwargs):  # the process dies after pruning one step
        if os.path.basename(path).isdigit():
            if removed:
                raise KeyboardInterrupt
            removed.append(path)
        rmtree(path, **kwargs)

    monkeypatch.setattr(shutil, "rmtree", killed_after_one)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(tmp_path, 4, tree, keep=1, protect={2})
    monkeypatch.undo()
    assert checkpoint.all_steps(tmp_path) == [2, 3, 4] and checkpoint.latest_intact_step(tmp_path)[0] == 4
    checkpoint.save(tmp_path, 5, tree, keep=1, protect={2})  # the next save finishes the pruning
    assert checkpoint.all_steps(tmp_path) == [2, 5]


def test_checkpoints_keep_the_best_epoch_and_the_folder_finds_it(model, train_data, tmp_path):
    class Scores(Callback):  # a made-up metric whose best is epoch 2, before the checkpoints save
        def on_epoch_end(self, state, history):
            history[-1]["made_up_accuracy"] = (0.5, 0.9, 0.7, 0.6)[len(history) - 1]

    best = Checkpoints(tmp_path, keep=1, keep_best="made_up_accuracy")
    fit(model, train_data, optimizer=OPTIMIZER, epochs=4, batch_size=16, seed=3, callbacks=[Scores(), best])
    assert checkpoint.all_steps(tmp_path / "checkpoints") == [12, 24]
    folder = RunFolder(tmp_path)
    assert folder.inspect().intact == 24 and folder.best_step("made_up_accuracy") == 12
    assert folder.best_step("train_loss") == 24  # another metric's best was pruned with the rest: its newest
    with pytest.raises(LayerConfigError, match=r"^Checkpoints: argument `keep_best` must name a loss or"):
        Checkpoints(tmp_path, keep_best="epoch")
