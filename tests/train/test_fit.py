"""fit: scan and loop agree, resume is bit-for-bit, NaN stops cleanly, files are written.

The model and optimiser objects are shared, so ``fit`` calls reuse their
compiled epoch (``fit`` caches it per model, loss and optimiser).
"""

import json
import re

import jax
import numpy as np
import optax
import pytest

import funcnn as fn
from funcnn import checkpoint, distributed
from funcnn.data import scale_images
from funcnn.train import NonFiniteLossError, abstract_train_state, evaluate, fit, read_jsonl

FIELDS = {"epoch", "step", "train_loss", "train_accuracy", "test_loss", "test_accuracy", "seconds", "devices"}
OPTIMIZER = optax.adam(1e-2)
STEPS = 96 // 16  # steps per epoch


def run(model, train_data, test_data=None, **kwargs):
    options = {"optimizer": OPTIMIZER, "epochs": 2, "batch_size": 16, "seed": 3, "mode": "scan"} | kwargs
    return fit(model, train_data, test_data, **options)


@pytest.fixture(scope="module")
def straight(model, train_data, test_data, tmp_path_factory):
    """Two scanned epochs, uninterrupted, written to a folder: ``(result, out)``."""
    out = tmp_path_factory.mktemp("straight")
    return run(model, train_data, test_data, out=out, keep=1), out


def assert_trees_equal(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_training_learns_and_writes_metrics_curves_and_checkpoints(straight):
    result, out = straight
    records = read_jsonl(out / "metrics.jsonl")
    assert records == json.loads(json.dumps(result.history))
    assert [r["epoch"] for r in records] == [1, 2]
    assert all(set(r) >= FIELDS for r in records)
    assert records[-1]["devices"] == jax.device_count() == 4  # the test configuration's CPU devices
    assert records[-1]["test_accuracy"] > 0.9
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert checkpoint.all_steps(out / "checkpoints") == [2 * STEPS]  # keep=1


def test_scan_and_loop_give_the_same_numbers(straight, model, train_data, test_data):
    scanned = straight[0]
    looped = run(model, train_data, test_data, mode="loop")
    assert [r["mode"] for r in scanned.history] == ["scan", "scan"]
    assert [r["mode"] for r in looped.history] == ["loop", "loop"]
    for a, b in zip(jax.tree.leaves(scanned.state.params), jax.tree.leaves(looped.state.params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    for a, b in zip(scanned.history, looped.history, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-6)
        assert a["test_accuracy"] == b["test_accuracy"]
    assert int(scanned.state.step) == int(looped.state.step) == 2 * STEPS


def test_resume_is_bit_for_bit(straight, model, train_data, test_data, tmp_path):
    run(model, train_data, test_data, epochs=1, out=tmp_path)
    resumed = run(model, train_data, test_data, epochs=2, out=tmp_path, resume=True)
    assert_trees_equal(straight[0].state, resumed.state)
    losses = [r["train_loss"] for r in resumed.history]
    assert losses == [r["train_loss"] for r in straight[0].history]
    assert [r["epoch"] for r in read_jsonl(tmp_path / "metrics.jsonl")] == [1, 2]


def test_existing_checkpoints_need_resume_with_the_same_seed(straight, model, train_data):
    out = straight[1]
    with pytest.raises(FileExistsError, match=f"already holds checkpoints .*latest step {2 * STEPS}"):
        run(model, train_data, epochs=3, out=out)
    with pytest.raises(
        fn.LayerConfigError,
        match=r"fit: argument `seed` 4 differs from the 3 of the checkpoint to resume in ",
    ):
        run(model, train_data, epochs=3, out=out, resume=True, seed=4)


def test_resuming_a_finished_run_changes_nothing(straight, model, train_data, test_data):
    result, out = straight
    again = run(model, train_data, test_data, out=out, resume=True)
    assert again.history == result.history
    assert_trees_equal(again.state, result.state)


@pytest.mark.parametrize("mode", ["scan", "loop"])
def test_nan_stops_naming_epoch_and_step_and_keeps_the_last_checkpoint(
    make_model, train_data, tmp_path, mode
):
    model = make_model(nan_from_step=8)  # the 9th step overall: epoch 2, step 3
    message = re.escape("training diverged: loss nan (bound 1e+06) at epoch 2, step 3 ")
    with pytest.raises(NonFiniteLossError, match=message):
        run(model, train_data, epochs=3, out=tmp_path, mode=mode)
    directory = tmp_path / "checkpoints"
    assert checkpoint.all_steps(directory) == [STEPS]
    target = abstract_train_state(model, OPTIMIZER, (-1, 6, 6, 1))
    state, meta = checkpoint.restore(directory, target)
    assert meta["epoch"] == 1 and int(state.step) == STEPS
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(state.params))
    assert [r["epoch"] for r in read_jsonl(tmp_path / "metrics.jsonl")] == [1]


def test_evaluate_counts_every_example_once(straight, model, test_data):
    state = straight[0].state
    images, labels = test_data
    logits, _ = model.apply(state.params, state.model_state, scale_images(images))
    expected_loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels.astype(np.int32)).mean()
    expected_accuracy = float(np.mean(np.argmax(np.asarray(logits), -1) == labels))
    for batch_size in (7, 50, 1000):
        result = evaluate(model, state.params, state.model_state, images, labels, batch_size=batch_size)
        assert result["accuracy"] == pytest.approx(expected_accuracy)
        assert result["loss"] == pytest.approx(float(expected_loss), rel=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "fast"}, "mode must be one of auto, scan, loop"),
        ({"epochs": 0}, r"fit: argument `epochs` must be a positive integer, got 0 \(int\)"),
        ({"epochs": 2.5}, r"fit: argument `epochs` must be a positive integer, got 2.5 \(float\)"),
        ({"batch_size": "16"}, r"fit: argument `batch_size` must be a positive integer, got '16' \(str\)"),
        ({"eval_batch_size": 0}, r"fit: argument `eval_batch_size` must be a positive integer, got 0"),
        ({"seed": -1}, r"fit: argument `seed` must be a non-negative integer, got -1 \(int\)"),
        ({"seed": 1.0}, r"fit: argument `seed` must be a non-negative integer, got 1.0 \(float\)"),
        ({"keep": 0, "out": "never-written"}, r"Checkpoints: argument `keep` must be a positive integer, got 0"),
        (
            {"optimizer": "adam"},
            r"fit: argument `optimizer` must be an optax GradientTransformation .* got 'adam'",
        ),
        (
            {"batch_size": 6},
            r"fit: argument `batch_size` 6 does not divide over the 4 devices of the mesh; use a multiple of 4",
        ),
        ({"shard_params": 1}, r"fit: argument `shard_params` must be True or False, got 1"),
        ({"mesh": "cpu"}, r"fit: argument `mesh` must be a jax.sharding.Mesh with a 'data' axis"),
        (
            {"mesh": jax.make_mesh((2, 2), ("data", "model"))},
            r"fit: argument `mesh` has axes \{'data': 2, 'model': 2\}; training is data-parallel over 'data' "
            "only",
        ),
    ],
)
def test_bad_arguments(model, train_data, kwargs, message):
    with pytest.raises(ValueError, match=message):
        run(model, train_data, **kwargs)


@pytest.mark.parametrize(
    "make_data, message",
    [
        (
            lambda images, labels: (images, labels[:-5]),
            r"fit: argument `train_data` has images of shape \(96, 6, 6\) but labels of shape \(91,\)",
        ),
        (
            lambda images, labels: (images, labels.reshape(-1, 1)),
            r"fit: argument `train_data` has images of shape \(96, 6, 6\) but labels of shape \(96, 1\)",
        ),
        (
            lambda images, labels: (images, labels.astype(np.float32)),
            r"fit: argument `train_data` labels must be integers, got dtype float32",
        ),
        (
            lambda images, labels: (images, np.where(labels == 2, 3, labels).astype(np.int64)),
            r"fit: argument `train_data` labels must lie in \[0, 3\) for a model with 3 outputs, got labels "
            r"from 0 to 3",
        ),
        (
            lambda images, labels: (images, (labels.astype(np.int32) - 1)),
            r"fit: argument `train_data` labels must lie in \[0, 3\) .* from -1 to 1",
        ),
        (lambda images, labels: images, r"fit: argument `train_data` must be an \(images, labels\) pair"),
    ],
)
def test_bad_training_data_is_refused_before_any_step(model, train_data, tmp_path, make_data, message):
    with pytest.raises(fn.LayerConfigError, match=message):
        run(model, make_data(*train_data), out=tmp_path)
    assert not (tmp_path / "checkpoints").exists() or not any((tmp_path / "checkpoints").iterdir())


def test_bad_test_data_is_refused_before_any_step(model, train_data, test_data):
    images, labels = test_data
    with pytest.raises(fn.LayerConfigError, match=r"fit: argument `test_data` labels must lie in \[0, 3\)"):
        run(model, train_data, (images, labels + 7))


def test_an_uncalled_model_constructor_is_named(train_data):
    with pytest.raises(
        fn.LayerConfigError,
        match=r"fit: argument `model` is the function `seed_cnn`, not a layer; did you mean `seed_cnn\(\)`\?",
    ):
        run(fn.models.seed_cnn, train_data)


def _batches(train_data, size=16):
    images, labels = train_data
    return [(images[i : i + size], labels[i : i + size]) for i in range(0, len(images), size)]


def test_a_re_iterable_of_batches_trains_like_the_arrays_in_that_order(model, train_data):
    batches = _batches(train_data)
    result = fit(model, batches, optimizer=OPTIMIZER, epochs=2, batch_size=16, seed=3)
    assert [r["step"] for r in result.history] == [6, 12] and result.history[-1]["mode"] == "loop"
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda b: iter(b), r"fit: argument `train_data` is a one-shot iterator; pass a re-iterable"),
        (lambda b: [], r"fit: argument `train_data` holds no batches"),
        (
            lambda b: [*b[:2], (b[2][0], b[2][1] + 5)],
            r"fit: argument `train_data batch 2` labels must lie in \[0, 3\)",
        ),
        (
            lambda b: [*b[:1], (b[1][0], b[1][1][:3])],
            r"fit: argument `train_data batch 1` has images of shape \(16, 6, 6\) but labels of shape \(3,\)",
        ),
        (
            lambda b: [*b[:1], (b[1][0][:10], b[1][1][:10])],
            r"fit: argument `train_data` batch 1 has 10 rows per process, which do not divide over the 4 devices "
            r"of the mesh; drop or pad the incomplete batch",
        ),
    ],
)
def test_bad_batch_iterables_are_named(model, train_data, make, match):
    with pytest.raises(fn.LayerConfigError, match=match):
        fit(model, make(_batches(train_data)), optimizer=OPTIMIZER, epochs=1, batch_size=16)


def test_batches_cannot_run_as_a_scan(model, train_data):
    with pytest.raises(
        fn.LayerConfigError, match=r"fit: argument `mode`='scan' needs \(images, labels\) arrays"
    ):
        fit(model, _batches(train_data), optimizer=OPTIMIZER, epochs=1, batch_size=16, mode="scan")


def test_four_devices_give_the_numbers_of_one(straight, model, train_data, test_data):
    """The test configuration's four CPU devices against a one-device mesh: the same run up to the
    order of the gradient sums."""
    one = run(model, train_data, test_data, mesh=distributed.data_mesh(jax.devices()[:1]))
    four = straight[0]
    assert [r["devices"] for r in one.history] == [1, 1] and four.history[-1]["devices"] == 4
    for field in ("train_loss", "test_loss", "train_accuracy", "test_accuracy"):
        np.testing.assert_allclose(
            [r[field] for r in four.history], [r[field] for r in one.history], rtol=1e-5, atol=1e-6
        )
    for a, b in zip(jax.tree.leaves(four.state.params), jax.tree.leaves(one.state.params), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("mode", ["scan", "loop"])
def test_sharded_params_give_the_numbers_of_replicated_ones(straight, model, train_data, test_data, mode):
    sharded = run(model, train_data, test_data, shard_params=True, mode=mode)
    kernel = sharded.state.params["w"]  # (36, 3): split along its 36 rows, 9 per device
    assert kernel.sharding.spec == jax.sharding.PartitionSpec("data")
    assert {shard.data.shape for shard in kernel.addressable_shards} == {(9, 3)}
    adam_mu = sharded.state.opt_state[0].mu["w"]
    assert adam_mu.sharding.spec == jax.sharding.PartitionSpec("data")
    replicated = straight[0]
    np.testing.assert_allclose(
        [r["train_loss"] for r in sharded.history], [r["train_loss"] for r in replicated.history], rtol=1e-5
    )
    for a, b in zip(
        jax.tree.leaves(sharded.state.params), jax.tree.leaves(replicated.state.params), strict=True
    ):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)


def test_evaluate_checks_its_mesh(straight, model, test_data):
    state = straight[0].state
    with pytest.raises(
        fn.LayerConfigError, match=r"evaluate: argument `mesh` must be a jax.sharding.Mesh with a 'data'"
    ):
        evaluate(model, state.params, state.model_state, *test_data, mesh="cpu")


def test_evaluate_splits_each_batch_over_a_mesh(straight, model, test_data):
    state = straight[0].state
    alone = evaluate(model, state.params, state.model_state, *test_data, batch_size=7)
    split = evaluate(
        model, state.params, state.model_state, *test_data, batch_size=7, mesh=distributed.data_mesh()
    )
    assert split["accuracy"] == alone["accuracy"]
    assert split["loss"] == pytest.approx(alone["loss"], rel=1e-5)


def test_evaluate_moves_parameters_trained_on_other_devices_onto_its_mesh(straight, model, test_data):
    """Parameters from a 4-device run evaluate on a 1-device mesh and on a 2-device one (and the reverse)."""
    state = straight[0].state
    assert len(jax.tree.leaves(state.params)[0].sharding.device_set) == jax.device_count()
    alone = evaluate(model, state.params, state.model_state, *test_data, batch_size=8)
    for devices in (jax.devices()[:1], jax.devices()[1:3]):
        mesh = distributed.data_mesh(devices)
        moved = evaluate(model, state.params, state.model_state, *test_data, batch_size=8, mesh=mesh)
        assert moved["accuracy"] == alone["accuracy"]
        assert moved["loss"] == pytest.approx(alone["loss"], rel=1e-5)
    one = distributed.data_mesh(jax.devices()[:1])
    params = distributed.replicate(one, state.params)
    every = evaluate(model, params, state.model_state, *test_data, batch_size=8, mesh=distributed.data_mesh())
    assert every["accuracy"] == alone["accuracy"]


def test_fine_tuning_trains_the_trainable_leaves_from_the_initial_ones_and_resumes(
    straight, model, train_data, test_data, tmp_path
):
    """Frozen leaves stay bit for bit, hold no optimiser state, and a resumed run matches a straight one."""
    trained = straight[0].state
    initial = (trained.params, trained.model_state)
    options = {"trainable": "Layer/b", "initial": initial, "epochs": 2}
    tuned = run(model, train_data, test_data, **options)
    np.testing.assert_array_equal(tuned.state.params["w"], trained.params["w"])
    assert not np.array_equal(tuned.state.params["b"], trained.params["b"])
    assert [leaf.shape for leaf in jax.tree.leaves(tuned.state.opt_state)] == [(), (3,), (3,)]  # adam: b only
    run(model, train_data, test_data, out=tmp_path, **{**options, "epochs": 1})
    resumed = run(model, train_data, test_data, out=tmp_path, resume=True, **options)
    assert_trees_equal(tuned.state, resumed.state)


def test_initial_parameters_of_another_model_are_named(model, train_data):
    wrong_shape = ({"b": np.zeros(3, np.float32), "w": np.zeros((2, 3), np.float32)}, np.int32(0))
    with pytest.raises(
        fn.LayerConfigError, match=r"init_train_state: argument `initial` leaf \[0\]\['w'\] has shape \(2, 3\)"
    ):
        run(model, train_data, initial=wrong_shape)
    with pytest.raises(fn.LayerConfigError, match=r"init_train_state: argument `initial` has 1 leaves"):
        run(model, train_data, initial=({"w": np.zeros((2, 3), np.float32)}, ()))
