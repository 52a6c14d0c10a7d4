"""fit's callbacks: the protocol, the progress bar, the run folder as a callback, stopping early,
TensorBoard."""

import struct
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from funcnn.core import LayerConfigError
from funcnn.train import (
    Callback,
    Checkpoints,
    EarlyStopping,
    ProgressBar,
    StopTraining,
    TensorBoard,
    TrainStart,
    fit,
)
from funcnn.train.callbacks import epoch_line

OPTIMIZER = optax.adam(1e-2)
OPTIONS = {"optimizer": OPTIMIZER, "epochs": 3, "batch_size": 16, "seed": 3, "mode": "scan"}


class Recorder(Callback):
    def __init__(self):
        self.calls = []

    def on_train_begin(self, start):
        self.calls.append(("begin", len(start.history), start.epochs, start.steps_per_epoch))

    def on_steps(self, steps, metrics):
        self.calls.append(("steps", steps))

    def on_epoch_end(self, state, history):
        self.calls.append(("epoch", history[-1]["epoch"], int(state.step)))

    def on_train_end(self, state, history):
        self.calls.append(("end", len(history)))

    def close(self, error):
        self.calls.append(("close", type(error).__name__ if error else None))


def test_a_callback_sees_every_hook_in_order(model, train_data):
    recorder = Recorder()
    fit(model, train_data, **OPTIONS, callbacks=[recorder])
    epochs = [call for call in recorder.calls if call[0] == "epoch"]
    assert recorder.calls[0] == ("begin", 0, 3, 6) and epochs == [("epoch", e, 6 * e) for e in (1, 2, 3)]
    assert recorder.calls[-2:] == [("end", 3), ("close", None)]
    assert sum(call[1] for call in recorder.calls if call[0] == "steps") == 18


def test_a_callback_stops_training_after_its_epoch(model, train_data):
    class StopAfterTwo(Callback):
        def on_epoch_end(self, state, history):
            if len(history) == 2:
                raise StopTraining

    recorder = Recorder()
    result = fit(model, train_data, **OPTIONS, callbacks=[StopAfterTwo(), recorder])
    assert len(result.history) == 2 and ("epoch", 2, 12) in recorder.calls  # the others saw epoch 2


def test_close_gets_the_error_that_ended_training(model, train_data):
    class Fails(Callback):
        def on_epoch_end(self, state, history):
            raise RuntimeError("boom")

    recorder = Recorder()
    with pytest.raises(RuntimeError, match="boom"):
        fit(model, train_data, **OPTIONS, callbacks=[Fails(), recorder])
    assert recorder.calls[-1] == ("close", "RuntimeError")


def test_a_callback_can_resume_the_run(model, train_data, tmp_path):
    first = fit(model, train_data, **(OPTIONS | {"epochs": 1}))

    class ResumeFrom(Callback):
        def on_train_begin(self, start: TrainStart):
            return first.state, first.history

    recorder = Recorder()
    resumed = fit(model, train_data, **OPTIONS, callbacks=[ResumeFrom(), recorder])
    straight = fit(model, train_data, **OPTIONS)
    assert recorder.calls[0] == ("begin", 1, 3, 6)
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in straight.history]


def test_out_is_short_for_the_checkpoints_callback(model, train_data, tmp_path):
    by_shortcut = fit(model, train_data, **OPTIONS, out=tmp_path / "a")
    by_callback = fit(model, train_data, **OPTIONS, callbacks=[Checkpoints(tmp_path / "b")])
    assert (tmp_path / "a" / "metrics.jsonl").read_text().count("\n") == 3
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == sorted(
        p.name for p in (tmp_path / "b").iterdir()
    )
    assert [r["train_loss"] for r in by_shortcut.history] == [r["train_loss"] for r in by_callback.history]


@pytest.mark.parametrize(
    ("callbacks", "match"),
    [
        (Recorder(), r"fit: argument `callbacks` must be a sequence of funcnn.train.Callback, got Recorder"),
        ("cb", r"fit: argument `callbacks` must be a sequence of funcnn.train.Callback, got str"),
        (
            [print],
            r"fit: argument `callbacks`\[0\] must be a funcnn.train.Callback or have one of its methods "
            r"\(on_train_begin, on_steps, on_epoch_end, on_train_end, close\), got builtin_function",
        ),
    ],
)
def test_bad_callbacks_are_named(model, train_data, callbacks, match):
    with pytest.raises(LayerConfigError, match=match):
        fit(model, train_data, **OPTIONS, callbacks=callbacks)


def test_any_object_with_some_of_the_hooks_is_a_callback(model, train_data):
    class Epochs:  # no Callback base: the protocol is its methods
        def __init__(self):
            self.seen = []

        def on_epoch_end(self, state, history):
            self.seen.append(history[-1]["epoch"])

    epochs = Epochs()
    fit(model, train_data, **OPTIONS, callbacks=[epochs])
    assert epochs.seen == [1, 2, 3]


def test_checkpoints_checks_its_arguments(tmp_path):
    with pytest.raises(
        LayerConfigError, match=r"Checkpoints: argument `keep` must be a positive integer, got 0"
    ):
        Checkpoints(tmp_path, keep=0)


def test_progress_bar_counts_steps_and_epoch_lines_read_well(capsys):
    bar = ProgressBar()
    bar.on_train_begin(TrainStart(None, None, [{}] * 2, 10, 1, 16, 0))
    metrics = type("M", (), {"loss": jnp.ones(3), "accuracy": jnp.ones(3) / 2})()
    bar.on_steps(3, metrics)
    assert bar.bar.n == 5
    bar.close(None)
    line = epoch_line(
        {"epoch": 1, "train_loss": 0.5, "train_accuracy": 0.8, "test_loss": None, "test_accuracy": None,
         "seconds": 2.0, "images_per_second": 100.0}, 3)  # fmt: skip
    assert line == "epoch 1/3: train loss 0.5000 acc 0.8000, 2.0 s, 100 img/s"


# --- early stopping, TensorBoard ----------------------------------------------------------------

TIMING = ("seconds", "images_per_second")


def _without_timing(history):
    return [{k: v for k, v in record.items() if k not in TIMING} for record in history]


def test_early_stopping_stops_once_the_metric_has_not_improved_for_patience_epochs(
    model, train_data, test_data
):
    stopping = EarlyStopping(2, min_delta=1.0)  # no accuracy can improve by 1: the best stays epoch 1
    result = fit(model, train_data, test_data, **(OPTIONS | {"epochs": 6}), callbacks=[stopping])
    assert len(result.history) == 3
    first = result.history[0]["test_accuracy"]
    assert (
        stopping.stopped
        == f"test_accuracy has not improved on {first:.4f} (epoch 1) for 2 epochs (patience 2)"
    )
    assert EarlyStopping(3, min_delta=1.0).reason(result.history) is None
    assert EarlyStopping(1, monitor="test_loss").reason(result.history) is None  # the loss still falls


def test_a_resumed_run_stops_after_the_same_epoch_bit_for_bit(model, train_data, test_data, tmp_path):
    def run(out, epochs, resume=False):
        callbacks = [Checkpoints(out, resume=resume), EarlyStopping(2, min_delta=1.0)]
        return fit(model, train_data, test_data, **(OPTIONS | {"epochs": epochs}), callbacks=callbacks)

    straight = run(tmp_path / "straight", 6)
    run(tmp_path / "resumed", 1)
    resumed = run(tmp_path / "resumed", 6, resume=True)
    assert len(resumed.history) == len(straight.history) == 3
    assert _without_timing(resumed.history) == _without_timing(straight.history)
    for a, b in zip(
        jax.tree.leaves(straight.state.params), jax.tree.leaves(resumed.state.params), strict=True
    ):
        np.testing.assert_array_equal(a, b)
    again = run(tmp_path / "resumed", 6, resume=True)  # already stopped: no further epoch
    assert _without_timing(again.history) == _without_timing(straight.history)
    assert int(again.state.step) == int(straight.state.step)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: EarlyStopping(0), r"^EarlyStopping: argument `patience` must be a positive integer, got 0"),
        (
            lambda: EarlyStopping(2, monitor="seconds"),
            r"^EarlyStopping: argument `monitor` must name a loss or",
        ),
        (lambda: EarlyStopping(2, min_delta=-0.1), r"^EarlyStopping: argument `min_delta` must be >= 0"),
    ],
)
def test_early_stopping_checks_its_arguments(make, match):
    with pytest.raises(LayerConfigError, match=match):
        make()


def test_early_stopping_without_test_data_is_named(model, train_data):
    with pytest.raises(
        LayerConfigError, match=r"'test_accuracy': epoch 1's record has no value for it \(None"
    ):
        fit(model, train_data, **OPTIONS, callbacks=[EarlyStopping(1)])


def _events(logdir):
    """``{tag: [(step, value), ...]}`` from the TFRecord event files under ``logdir``."""
    event_pb2 = pytest.importorskip("tensorboardX.proto.event_pb2")
    scalars = {}
    for path in sorted(logdir.glob("events.out.tfevents.*")):
        data, at = path.read_bytes(), 0
        while at < len(data):
            (length,) = struct.unpack("<Q", data[at : at + 8])
            event = event_pb2.Event.FromString(data[at + 12 : at + 12 + length])
            at += 12 + length + 4
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


def test_tensorboard_writes_each_epochs_scalars_at_its_last_step(model, train_data, test_data, tmp_path):
    pytest.importorskip("tensorboardX")
    board = TensorBoard(tmp_path / "tb", learning_rate=optax.linear_schedule(0.1, 0.0, 18))
    result = fit(model, train_data, test_data, **OPTIONS, callbacks=[board])
    scalars = _events(tmp_path / "tb")
    assert set(scalars) == {
        "loss/train", "loss/test", "accuracy/train", "accuracy/test", "images_per_second", "learning_rate",
    }  # fmt: skip
    assert [step for step, _ in scalars["accuracy/test"]] == [6, 12, 18]
    assert [v for _, v in scalars["accuracy/test"]] == pytest.approx(
        [r["test_accuracy"] for r in result.history]
    )
    assert [v for _, v in scalars["learning_rate"]] == pytest.approx(
        [0.1 * (1 - s / 18) for s in (5, 11, 17)]
    )


def test_tensorboard_names_the_extra_to_install_when_it_is_missing(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    with pytest.raises(
        ImportError, match=r"TensorBoard needs the tensorboardX package: pip install 'funcnn\[tensorboard\]'"
    ):
        TensorBoard(tmp_path)


def test_the_epoch_line_shows_the_moving_averages_accuracy():
    record = {"epoch": 1, "train_loss": 0.5, "train_accuracy": 0.8, "test_loss": 0.25, "test_accuracy": 0.9,
              "ema_test_loss": 0.2, "ema_test_accuracy": 0.95, "seconds": 2.0, "images_per_second": 100.0}  # fmt: skip
    assert epoch_line(record, 3) == (
        "epoch 1/3: train loss 0.5000 acc 0.8000, test loss 0.2500 acc 0.9000, EMA test loss 0.2000 acc 0.9500, "
        "2.0 s, 100 img/s"
    )
