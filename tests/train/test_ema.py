"""The moving average of the parameters: by hand, in fit, evaluated each epoch, resumed bit for bit."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from funcnn.core import LayerConfigError
from funcnn.data import batch_indices
from funcnn.train import (
    DEFAULT_LOSS,
    EMA,
    Checkpoints,
    EmaState,
    TrainStart,
    ema_params,
    evaluate,
    fit,
    init_train_state,
    make_train_step,
    read_jsonl,
    with_ema,
)

OPTIMIZER = optax.adam(1e-2)
EMA_OPTIMIZER = with_ema(OPTIMIZER, 0.9)
OPTIONS = {"epochs": 2, "batch_size": 16, "seed": 3, "mode": "loop"}
TIMING = ("seconds", "images_per_second")


def by_hand(decay, history):
    """``ema_t = decay * ema_{t-1} + (1 - decay) * params_t`` in float64 over a list of param trees."""
    ema = jax.tree.map(lambda p: np.asarray(p, np.float64), history[0])
    for params in history[1:]:
        ema = jax.tree.map(lambda e, p: decay * e + (1 - decay) * np.asarray(p, np.float64), ema, params)
    return ema


def max_difference(a, b):
    return max(
        float(np.max(np.abs(np.asarray(x) - y))) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
    )


def test_the_average_is_the_one_computed_by_hand_from_each_steps_parameters(model, train_data):
    """Eight steps of the real train step: the average in the state is the float64 one to float32 rounding."""
    step = make_train_step(model, DEFAULT_LOSS, EMA_OPTIMIZER)
    state = init_train_state(model, EMA_OPTIMIZER, jax.random.key(0), (-1, 6, 6))
    history = [jax.device_get(state.params)]
    for rows in batch_indices(0, 0, len(train_data[0]), 12):
        state, _ = step(state, train_data[0][rows], train_data[1][rows])
        history.append(jax.device_get(state.params))
    assert len(history) == 9 and max_difference(history[0], history[-1]) > 0.05  # the parameters moved
    assert max_difference(ema_params(state), by_hand(0.9, history)) < 1e-6


def test_the_average_starts_at_the_initial_parameters_and_does_not_change_the_updates():
    params = {"w": jnp.arange(3.0), "b": jnp.ones(())}
    grads = {"w": jnp.array([1.0, -2.0, 0.5]), "b": jnp.ones(())}
    plain, averaged = optax.sgd(0.1), with_ema(optax.sgd(0.1), 0.75)
    state = averaged.init(params)
    assert isinstance(state, EmaState) and jax.tree.all(jax.tree.map(jnp.array_equal, state.ema, params))
    updates, state = averaged.update(grads, state, params)
    expected, _ = plain.update(grads, plain.init(params), params)
    assert jax.tree.all(jax.tree.map(jnp.array_equal, updates, expected))
    np.testing.assert_allclose(state.ema["w"], 0.75 * params["w"] + 0.25 * (params["w"] - 0.1 * grads["w"]))


def test_fit_trains_the_same_parameters_and_records_the_averages_test_metrics(
    model, train_data, test_data, tmp_path
):
    plain = fit(model, train_data, test_data, optimizer=OPTIMIZER, **OPTIONS)
    averaged = fit(
        model, train_data, test_data, optimizer=EMA_OPTIMIZER, **OPTIONS,
        callbacks=[EMA(model, test_data), Checkpoints(tmp_path)],
    )  # fmt: skip
    for a, b in zip(jax.tree.leaves(plain.state.params), jax.tree.leaves(averaged.state.params), strict=True):
        np.testing.assert_array_equal(a, b)
    assert max_difference(ema_params(averaged.state), jax.device_get(averaged.state.params)) > 1e-3
    expected = evaluate(model, ema_params(averaged.state), averaged.state.model_state, *test_data)
    last = averaged.history[-1]
    assert (last["ema_test_loss"], last["ema_test_accuracy"]) == pytest.approx(
        (expected["loss"], expected["accuracy"]), rel=1e-6
    )
    written = read_jsonl(tmp_path / "metrics.jsonl")
    assert [r["ema_test_accuracy"] for r in written] == [r["ema_test_accuracy"] for r in averaged.history]


def test_a_resumed_run_continues_the_average_bit_for_bit(model, train_data, test_data, tmp_path):
    def run(out, epochs, resume=False):
        return fit(
            model, train_data, test_data, optimizer=EMA_OPTIMIZER, **(OPTIONS | {"epochs": epochs}),
            callbacks=[EMA(model, test_data), Checkpoints(out, resume=resume)],
        )  # fmt: skip

    straight = run(tmp_path / "straight", 3)
    run(tmp_path / "resumed", 1)
    resumed = run(tmp_path / "resumed", 3, resume=True)
    for a, b in zip(jax.tree.leaves(straight.state), jax.tree.leaves(resumed.state), strict=True):
        if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
            a, b = jax.random.key_data(a), jax.random.key_data(b)
        np.testing.assert_array_equal(a, b)
    strip = lambda history: [{k: v for k, v in r.items() if k not in TIMING} for r in history]  # noqa: E731
    assert strip(resumed.history) == strip(straight.history)
    assert strip(read_jsonl(tmp_path / "resumed" / "metrics.jsonl")) == strip(straight.history)


def test_frozen_parameters_are_their_own_average(model, train_data):
    result = fit(model, train_data, optimizer=EMA_OPTIMIZER, **(OPTIONS | {"epochs": 1}), trainable="*b")
    averaged = ema_params(result.state)
    np.testing.assert_array_equal(averaged["w"], result.state.params["w"])
    assert max_difference(averaged["b"], jax.device_get(result.state.params["b"])) > 0


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (
            lambda: with_ema(OPTIMIZER, 1.0),
            LayerConfigError,
            r"with_ema: argument `decay` must be in \(0, 1\)",
        ),
        (lambda: with_ema(OPTIMIZER, True), LayerConfigError, r"with_ema: argument `decay` must be a real"),
        (
            lambda: EMA_OPTIMIZER.update({"w": jnp.ones(2)}, EMA_OPTIMIZER.init({"w": jnp.ones(2)})),
            LayerConfigError,
            r"with_ema: `update` needs `params` to average",
        ),
    ],
)
def test_bad_arguments_are_named(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_the_average_of_a_state_without_one_and_its_callback_are_refused(model, train_data, test_data):
    plain = fit(model, train_data, optimizer=OPTIMIZER, **(OPTIONS | {"epochs": 1}))
    with pytest.raises(LayerConfigError, match=r"ema_params: the optimiser state holds no moving average"):
        ema_params(plain.state)
    with pytest.raises(
        LayerConfigError, match=r"EMA: the optimiser keeps no moving average of the parameters"
    ):
        fit(model, train_data, optimizer=OPTIMIZER, **OPTIONS, callbacks=[EMA(model, test_data)])


def test_with_sharded_parameters_the_average_is_split_like_them_and_the_same(model, train_data, test_data):
    options = OPTIONS | {"epochs": 1}
    sharded = fit(model, train_data, optimizer=EMA_OPTIMIZER, **options, shard_params=True)
    average = sharded.state.opt_state.ema["w"]  # (36, 3): split along its 36 rows, as the kernel
    assert average.sharding == sharded.state.params["w"].sharding
    assert average.sharding.spec == jax.sharding.PartitionSpec("data")
    assert {shard.data.shape for shard in average.addressable_shards} == {(9, 3)}
    replicated = fit(model, train_data, optimizer=EMA_OPTIMIZER, **options)
    assert max_difference(ema_params(sharded.state), ema_params(replicated.state)) < 1e-6
    result = EMA(model, test_data)
    result.on_train_begin(TrainStart(sharded.state, None, [], 1, 6, 16, 3))
    history = [{}]
    result.on_epoch_end(sharded.state, history)
    assert 0 <= history[0]["ema_test_accuracy"] <= 1
