"""``Dropout`` and ``SpatialDropout``: the rate is the drop probability, masks shared along
``broadcast_dims``, keys and axes are checked."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcnn as fn
from funcnn.layers.dropout import Dropout, SpatialDropout
from tests.layers.test_shape_agreement import check_shape_agreement

KEY = jax.random.key(0)


def test_dropout_rate_is_the_drop_probability():
    x = jnp.ones((100_000,))[None]
    y, _ = fn.Dropout(0.25).apply((), (), x, key=jax.random.key(0), train=True)
    dropped = float(jnp.mean(y == 0))
    assert abs(dropped - 0.25) < 0.01
    np.testing.assert_allclose(jnp.mean(y), 1.0, atol=0.02)
    np.testing.assert_array_equal(fn.Dropout(0.25).apply((), (), x)[0], x)


@pytest.mark.parametrize("rate", [np.float32(0.5), np.float64(0.1), jnp.asarray(0.3), 0, np.int64(0)])
def test_any_real_scalar_rate_in_range_is_accepted(rate):
    y, _ = fn.Dropout(rate).apply((), (), jnp.ones((4, 8)), key=jax.random.key(0), train=True)
    assert y.shape == (4, 8)


def test_legacy_keys_work_and_non_keys_are_refused():
    x = jnp.ones((2, 8))
    y, _ = fn.Dropout(0.5).apply((), (), x, key=jax.random.PRNGKey(0), train=True)
    assert y.shape == x.shape
    with pytest.raises(
        fn.LayerConfigError, match=r"Dropout: argument `key` must be a PRNG key .* got 3 \(int\)"
    ):
        fn.Dropout(0.5).apply((), (), x, key=3, train=True)


def test_integer_input_becomes_floating():
    y, _ = fn.Dropout(0.5).apply((), (), jnp.ones((2, 4), jnp.uint8), key=jax.random.key(0), train=True)
    assert y.dtype == jnp.float32 and set(np.unique(y)) <= {0.0, 2.0}


# --- a mask shared along some axes: broadcast_dims and SpatialDropout ---------------------------------


def _kept_factor(layer, x, seed=0):
    """``y / x`` for a positive ``x``: ``0`` where dropped, ``1 / (1 - rate)`` where kept."""
    y, _ = layer.apply((), (), x, key=jax.random.key(seed), train=True)
    return np.asarray(y / x)


@pytest.mark.parametrize("rate", [0.25, 0.6])
def test_broadcast_dims_drop_whole_channels_and_scale_the_kept_ones(rate):
    x = 1.0 + jax.random.uniform(jax.random.key(1), (64, 5, 4, 32))
    factor = _kept_factor(Dropout(rate, broadcast_dims=(1, 2)), x)
    per_channel = factor[:, :1, :1, :]  # one value per example and channel
    np.testing.assert_allclose(factor, np.broadcast_to(per_channel, factor.shape), rtol=1e-6)
    np.testing.assert_allclose(per_channel[per_channel != 0], 1 / (1 - rate), rtol=1e-6)
    dropped = float(np.mean(per_channel == 0))
    assert abs(dropped - rate) < 0.04  # 2048 channels: the binomial spread is about 0.01
    y = factor * np.asarray(x)
    np.testing.assert_allclose(y.mean(), np.asarray(x).mean(), rtol=0.05)  # the expectation is kept


def test_negative_broadcast_dims_name_the_same_axes():
    x = 1.0 + jax.random.uniform(jax.random.key(1), (4, 5, 4, 8))
    positive = _kept_factor(Dropout(0.5, broadcast_dims=(1, 2)), x)
    np.testing.assert_array_equal(positive, _kept_factor(Dropout(0.5, broadcast_dims=(-3, -2)), x))
    np.testing.assert_array_equal(positive, _kept_factor(Dropout(0.5, broadcast_dims=[2, 1]), x))


def test_broadcast_over_the_batch_shares_one_mask_between_examples():
    x = jnp.ones((6, 50))
    factor = _kept_factor(Dropout(0.5, broadcast_dims=0), x)
    np.testing.assert_array_equal(factor, np.broadcast_to(factor[:1], factor.shape))
    assert 0 < np.mean(factor[0] == 0) < 1


def test_default_broadcast_dims_draw_every_element():
    x = jnp.ones((2, 4, 4, 16))
    np.testing.assert_array_equal(
        _kept_factor(Dropout(0.5), x), _kept_factor(Dropout(0.5, broadcast_dims=()), x)
    )


@pytest.mark.parametrize("shape", [(8, 9, 16), (8, 5, 4, 16), (8, 3, 4, 2, 16)])
def test_spatial_dropout_is_dropout_over_every_spatial_axis(shape):
    x = 1.0 + jax.random.uniform(jax.random.key(2), shape)
    spatial = tuple(range(1, len(shape) - 1))
    factor = _kept_factor(SpatialDropout(0.5), x)
    np.testing.assert_array_equal(factor, _kept_factor(Dropout(0.5, broadcast_dims=spatial), x))
    per_channel = factor[(slice(None), *(slice(0, 1),) * len(spatial), slice(None))]
    np.testing.assert_allclose(factor, np.broadcast_to(per_channel, factor.shape), rtol=1e-6)
    assert 0 < np.mean(per_channel == 0) < 1
    np.testing.assert_allclose(per_channel[per_channel != 0], 2.0, rtol=1e-6)


def test_spatial_dropout_is_the_identity_outside_training():
    x = jnp.ones((2, 4, 4, 3))
    y, _ = SpatialDropout(0.5).apply((), (), x)
    np.testing.assert_array_equal(y, x)


def test_gradient_flows_only_through_the_kept_channels():
    x = jnp.ones((4, 3, 3, 8))
    layer = Dropout(0.5, broadcast_dims=(1, 2))
    y, _ = layer.apply((), (), x, key=jax.random.key(3), train=True)
    dx = jax.grad(lambda x: jnp.sum(layer.apply((), (), x, key=jax.random.key(3), train=True)[0]))(x)
    np.testing.assert_array_equal(dx, y)  # x is ones: the gradient is the mask over (1 - rate)


@pytest.mark.parametrize(
    "layer_fn, shape",
    [
        (lambda: Dropout(0.5, broadcast_dims=(1, 2)), (-1, 5, 4, 3)),
        (lambda: Dropout(0.5, broadcast_dims=-1), (-1, 6)),
        (lambda: SpatialDropout(0.3), (-1, 9, 2)),
        (lambda: SpatialDropout(0.3), (-1, 5, 4, 3)),
        (lambda: SpatialDropout(0.3), (-1, 3, 4, 2, 3)),
    ],
)
def test_shared_mask_dropout_shape_agreement(layer_fn, shape):
    assert check_shape_agreement(layer_fn(), shape) == shape


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: Dropout(0.5, broadcast_dims=1.0), r"Dropout: argument `broadcast_dims` must be an integer or a tuple of integers, got 1.0 \(float\)"),
        (lambda: Dropout(0.5, broadcast_dims=(1, "2")), r"Dropout: argument `broadcast_dims` must be an integer or a tuple of integers, got \(1, '2'\) \(tuple\)"),
        (lambda: Dropout(0.5, broadcast_dims=True), r"Dropout: argument `broadcast_dims` must be an integer or a tuple of integers, got True \(bool\)"),
        (lambda: Dropout(0.5, broadcast_dims=(2, 2)), r"Dropout: argument `broadcast_dims` must not repeat an axis, got \(2, 2\)"),
        (lambda: Dropout(1.0, broadcast_dims=(1, 2)), r"Dropout: argument `rate` must be in \[0, 1\), got 1.0"),
        (lambda: SpatialDropout(-0.5), r"SpatialDropout: argument `rate` must be in \[0, 1\), got -0.5"),
        (lambda: SpatialDropout(0.5, dtype="int8"), r"SpatialDropout: argument `dtype` must be a floating-point dtype"),
        (lambda: Dropout(0.5, broadcast_dims=(1, 4)).init(KEY, (-1, 4, 4, 3)), r"Dropout: argument `broadcast_dims`=\(1, 4\) is out of range \(or repeated\) for an input of shape \(-1, 4, 4, 3\)"),
        (lambda: Dropout(0.5, broadcast_dims=(1, -3)).init(KEY, (-1, 4, 4, 3)), r"Dropout: argument `broadcast_dims`=\(1, -3\) is out of range \(or repeated\) for an input of shape \(-1, 4, 4, 3\)"),
        (lambda: Dropout(0.5, broadcast_dims=(1, 2)).apply((), (), jnp.ones((2, 4))), r"Dropout: argument `broadcast_dims`=\(1, 2\) is out of range \(or repeated\) for an input of shape \(2, 4\)"),
        (lambda: Dropout(0.5, broadcast_dims=-3).apply((), (), jnp.ones((2, 4)), key=KEY, train=True), r"Dropout: argument `broadcast_dims`=-3 is out of range \(or repeated\) for an input of shape \(2, 4\)"),
        (lambda: SpatialDropout(0.5).init(KEY, (-1, 4)), r"SpatialDropout: argument `x` must have rank 3, 4 or 5, but has shape \(-1, 4\) \(rank 2\)"),
        (lambda: SpatialDropout(0.5).apply((), (), jnp.ones((1, 2, 2, 2, 2, 3)), key=KEY, train=True), r"SpatialDropout: argument `x` must have rank 3, 4 or 5, but has shape \(1, 2, 2, 2, 2, 3\) \(rank 6\)"),
        (lambda: SpatialDropout(0.5).apply((), (), jnp.ones((2, 4, 3)), train=True), r"SpatialDropout: argument `key` is required when train=True \(rate=0.5, x.shape=\(2, 4, 3\)\)"),
        (lambda: SpatialDropout(0.5).apply({"w": jnp.ones(1)}, (), jnp.ones((2, 4, 3))), r"SpatialDropout: argument `params` must be empty"),
    ],
)  # fmt: skip
def test_shared_mask_arguments_are_checked(call, match):
    with pytest.raises(fn.LayerConfigError, match=match):
        call()
