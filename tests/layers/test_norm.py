"""``BatchNorm``, ``LayerNorm``, ``GroupNorm``: values, state checks, batch-size rules."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcnn as fn

KEY = jax.random.key(0)


def test_batchnorm_normalises_with_batch_statistics_in_training():
    layer = fn.BatchNorm(momentum=0.9)
    _, params, state = layer.init(KEY, (-1, 4, 4, 3))
    x = 3.0 + 2.0 * jax.random.normal(jax.random.key(1), (8, 4, 4, 3))
    y, new_state = layer.apply(params, state, x, train=True)
    np.testing.assert_allclose(jnp.mean(y, axis=(0, 1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(jnp.std(y, axis=(0, 1, 2)), 1.0, atol=1e-3)
    np.testing.assert_allclose(new_state.mean, 0.1 * jnp.mean(x, axis=(0, 1, 2)), rtol=1e-5)
    assert isinstance(new_state, fn.BatchNormState)


def test_layernorm_and_groupnorm_normalise_per_example():
    x = 5.0 + 3.0 * jax.random.normal(KEY, (2, 4, 4, 6))
    _, params, _ = fn.LayerNorm().init(KEY, x.shape)
    y, _ = fn.LayerNorm().apply(params, (), x)
    np.testing.assert_allclose(jnp.mean(y, axis=-1), 0.0, atol=1e-5)
    _, params, _ = fn.GroupNorm(3).init(KEY, x.shape)
    y, _ = fn.GroupNorm(3).apply(params, (), x)
    grouped = y.reshape(2, 4, 4, 3, 2)
    np.testing.assert_allclose(jnp.mean(grouped, axis=(1, 2, 4)), 0.0, atol=1e-5)
    np.testing.assert_allclose(jnp.var(grouped, axis=(1, 2, 4)), 1.0, atol=1e-3)


@pytest.mark.parametrize("batch, count", [((0, 4), 0), ((1, 4), 1), ((1, 1, 1, 4), 1)])
def test_batchnorm_training_needs_two_values_per_channel(batch, count):
    layer = fn.BatchNorm()
    _, params, state = layer.init(KEY, (-1, *batch[1:]))
    with pytest.raises(
        fn.LayerConfigError,
        match=rf"BatchNorm: argument `x` of shape \({', '.join(map(str, batch))},?\) has {count} value\(s\) per channel",
    ):
        layer.apply(params, state, jnp.ones(batch), train=True)
    y, same = layer.apply(params, state, jnp.ones(batch))  # evaluation uses the running statistics
    assert y.shape == batch and same is state


def test_batchnorm_state_is_checked():
    layer = fn.BatchNorm()
    _, params, state = layer.init(KEY, (-1, 4))
    with pytest.raises(fn.LayerConfigError, match=r"BatchNorm: argument `state` must be the BatchNormState"):
        layer.apply(params, (), jnp.ones((2, 4)), train=True)
    bad = fn.BatchNormState(state.mean, jnp.ones(5))
    with pytest.raises(fn.LayerConfigError, match=r"BatchNorm: argument `state` leaf 'var' has shape \(5,\)"):
        layer.apply(params, bad, jnp.ones((2, 4)))


def test_batchnorm_of_integers_updates_float_statistics():
    layer = fn.BatchNorm(momentum=0.5)
    _, params, state = layer.init(KEY, (-1, 2))
    y, new_state = layer.apply(params, state, jnp.array([[0, 2], [2, 4]], jnp.uint8), train=True)
    assert y.dtype == jnp.float32
    np.testing.assert_allclose(new_state.mean, [0.5, 1.5])


def _bn_batch():
    return np.random.default_rng(1).normal(2.0, 3.0, size=(8, 4, 4, 3)).astype(np.float32)


def test_batchnorm_of_a_sharded_batch_uses_the_global_statistics():
    """Under jit with the batch split over four devices, XLA reduces across them."""
    from funcnn import distributed

    layer = fn.BatchNorm(momentum=0.5)
    x = _bn_batch()
    _, params, state = layer.init(jax.random.key(0), x.shape)
    apply = jax.jit(lambda p, s, x: layer.apply(p, s, x, train=True))
    want_y, want_state = apply(params, state, x)
    mesh = distributed.data_mesh()
    got_y, got_state = apply(
        distributed.replicate(mesh, params),
        distributed.replicate(mesh, state),
        distributed.shard_batch(mesh, x),
    )
    np.testing.assert_allclose(np.asarray(got_y), np.asarray(want_y), rtol=1e-5, atol=1e-5)
    for got, want in zip(got_state, want_state, strict=True):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5)


def test_batchnorm_axis_name_inside_shard_map_uses_the_global_statistics():
    from jax.sharding import PartitionSpec as P

    from funcnn import distributed

    x = _bn_batch()
    plain, synced = fn.BatchNorm(momentum=0.5), fn.BatchNorm(momentum=0.5, axis_name="data")
    _, params, state = plain.init(jax.random.key(0), x.shape)
    want_y, want_state = plain.apply(params, state, x, train=True)
    mesh = distributed.data_mesh()

    def per_device(params, state, x):
        y, new_state = synced.apply(params, state, x, train=True)
        return y, jax.tree.map(lambda s: s[None], new_state)  # one copy per device, to compare them

    got_y, got_state = jax.jit(
        jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P(), P("data")), out_specs=(P("data"), P("data")))
    )(params, state, x)
    np.testing.assert_allclose(np.asarray(got_y), np.asarray(want_y), rtol=1e-5, atol=1e-5)
    for got, want in zip(got_state, want_state, strict=True):
        got = np.asarray(got)
        assert got.shape == (4, 3)
        np.testing.assert_array_equal(got, np.broadcast_to(got[0], got.shape))  # identical on every device
        np.testing.assert_allclose(got[0], np.asarray(want), rtol=1e-5)
    # without axis_name each device normalises with its own rows' statistics
    alone = jax.jit(jax.shard_map(lambda p, s, x: plain.apply(p, s, x, train=True)[0], mesh=mesh,
                                  in_specs=(P(), P(), P("data")), out_specs=P("data")))(params, state, x)  # fmt: skip
    assert not np.allclose(np.asarray(alone), np.asarray(want_y), atol=1e-3)


def test_batchnorm_axis_name_counts_the_rows_of_every_device():
    """One row per device is four values per channel over the mesh: enough for statistics."""
    from jax.sharding import PartitionSpec as P

    from funcnn import distributed

    x = np.random.default_rng(2).normal(size=(4, 3)).astype(np.float32)
    synced = fn.BatchNorm(axis_name="data")
    _, params, state = synced.init(jax.random.key(0), x.shape)
    per_device = jax.shard_map(
        lambda p, s, x: synced.apply(p, s, x, train=True)[0],
        mesh=distributed.data_mesh(),
        in_specs=(P(), P(), P("data")),
        out_specs=P("data"),
    )
    want = (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-5)
    np.testing.assert_allclose(np.asarray(jax.jit(per_device)(params, state, x)), want, rtol=1e-4, atol=1e-5)


def test_batchnorm_axis_name_is_checked():
    with pytest.raises(
        fn.LayerConfigError, match=r"BatchNorm: argument `axis_name` must be None, a mesh axis name"
    ):
        fn.BatchNorm(axis_name=3)
    with pytest.raises(fn.LayerConfigError, match=r"BatchNorm: argument `axis_name` must be None"):
        fn.BatchNorm(axis_name=())
    layer = fn.BatchNorm(axis_name="data")
    x = _bn_batch()
    _, params, state = layer.init(jax.random.key(0), x.shape)
    with pytest.raises(
        fn.LayerConfigError, match=r"BatchNorm: argument `axis_name` 'data' is not a bound axis here"
    ):
        layer.apply(params, state, x, train=True)
    y, same = layer.apply(params, state, x, train=False)  # evaluation uses the running statistics only
    assert same is state and y.shape == x.shape


def test_batchnorm_in_bfloat16_keeps_float32_statistics():
    layer = fn.BatchNorm(momentum=0.0, dtype=jnp.bfloat16)
    x = _bn_batch() + 20.0  # a mean well above the spread: bfloat16 sums would lose the variance
    _, params, state = layer.init(jax.random.key(0), x.shape)
    y, new_state = layer.apply(params, state, x, train=True)
    assert y.dtype == jnp.bfloat16 and new_state.mean.dtype == new_state.var.dtype == jnp.float32
    rounded = np.asarray(jnp.asarray(x, jnp.bfloat16), np.float64).reshape(-1, 3)  # what the layer sees
    np.testing.assert_allclose(np.asarray(new_state.mean), rounded.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(new_state.var), rounded.var(axis=0), rtol=1e-4)
