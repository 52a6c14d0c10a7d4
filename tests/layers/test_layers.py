"""Layer behaviour: parameters, dtypes, padding modes, dropout, normalisation values."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcnn as fn
from funcnn import ops


def test_conv_params_and_dtypes():
    layer = fn.Conv(8, (3, 3), use_bias=False, dtype=jnp.bfloat16, param_dtype=jnp.float32)
    _, params, state = layer.init(jax.random.key(0), (-1, 5, 5, 2))
    assert set(params) == {"kernel"} and params["kernel"].dtype == jnp.float32
    y, _ = layer.apply(params, state, jnp.ones((1, 5, 5, 2)))
    assert y.dtype == jnp.bfloat16 and state == ()


@pytest.mark.parametrize(
    "mode, np_mode", [("reflect", "reflect"), ("replicate", "edge"), ("circular", "wrap")]
)
def test_conv_padding_modes_pad_then_valid(mode, np_mode):
    layer = fn.Conv(2, 3, padding=1, padding_mode=mode, use_bias=False)
    _, params, _ = layer.init(jax.random.key(0), (-1, 5, 5, 1))
    x = jax.random.normal(jax.random.key(1), (1, 5, 5, 1))
    y, _ = layer.apply(params, (), x)
    padded = jnp.asarray(np.pad(np.asarray(x), ((0, 0), (1, 1), (1, 1), (0, 0)), mode=np_mode))
    np.testing.assert_allclose(y, ops.conv(padded, params["kernel"]), rtol=1e-6)


def test_conv_transpose_upsamples_by_stride():
    layer = fn.ConvTranspose(3, (2, 2), strides=2, padding="SAME")
    shape, params, _ = layer.init(jax.random.key(0), (-1, 4, 4, 2))
    assert shape == (-1, 8, 8, 3) and params["kernel"].shape == (2, 2, 2, 3)


def test_dropout_rate_is_the_drop_probability():
    x = jnp.ones((100_000,))[None]
    y, _ = fn.Dropout(0.25).apply((), (), x, key=jax.random.key(0), train=True)
    dropped = float(jnp.mean(y == 0))
    assert abs(dropped - 0.25) < 0.01
    np.testing.assert_allclose(jnp.mean(y), 1.0, atol=0.02)
    np.testing.assert_array_equal(fn.Dropout(0.25).apply((), (), x)[0], x)


def test_batchnorm_normalises_with_batch_statistics_in_training():
    layer = fn.BatchNorm(momentum=0.9)
    _, params, state = layer.init(jax.random.key(0), (-1, 4, 4, 3))
    x = 3.0 + 2.0 * jax.random.normal(jax.random.key(1), (8, 4, 4, 3))
    y, new_state = layer.apply(params, state, x, train=True)
    np.testing.assert_allclose(jnp.mean(y, axis=(0, 1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(jnp.std(y, axis=(0, 1, 2)), 1.0, atol=1e-3)
    np.testing.assert_allclose(new_state.mean, 0.1 * jnp.mean(x, axis=(0, 1, 2)), rtol=1e-5)
    assert isinstance(new_state, fn.BatchNormState)


def test_layernorm_and_groupnorm_normalise_per_example():
    x = 5.0 + 3.0 * jax.random.normal(jax.random.key(0), (2, 4, 4, 6))
    _, params, _ = fn.LayerNorm().init(jax.random.key(0), x.shape)
    y, _ = fn.LayerNorm().apply(params, (), x)
    np.testing.assert_allclose(jnp.mean(y, axis=-1), 0.0, atol=1e-5)
    _, params, _ = fn.GroupNorm(3).init(jax.random.key(0), x.shape)
    y, _ = fn.GroupNorm(3).apply(params, (), x)
    grouped = y.reshape(2, 4, 4, 3, 2)
    np.testing.assert_allclose(jnp.mean(grouped, axis=(1, 2, 4)), 0.0, atol=1e-5)
    np.testing.assert_allclose(jnp.var(grouped, axis=(1, 2, 4)), 1.0, atol=1e-3)


@pytest.mark.parametrize(
    "layer, reference",
    [
        (fn.Relu(), jax.nn.relu),
        (fn.Sigmoid(), jax.nn.sigmoid),
        (fn.Tanh(), jnp.tanh),
        (fn.LeakyRelu(0.1), lambda x: jax.nn.leaky_relu(x, 0.1)),
        (fn.Elu(0.7), lambda x: jax.nn.elu(x, 0.7)),
        (fn.Gelu(approximate=False), lambda x: jax.nn.gelu(x, approximate=False)),
        (fn.Softmax(), jax.nn.softmax),
        (fn.LogSoftmax(), jax.nn.log_softmax),
    ],
    ids=lambda v: fn.identity.layer_name(v) if isinstance(v, fn.Layer) else "",
)
def test_activation_values(layer, reference):
    x = jnp.linspace(-3.0, 3.0, 24).reshape(2, 12)
    np.testing.assert_allclose(layer.apply((), (), x)[0], reference(x), rtol=1e-6, atol=1e-7)


def test_dense_values():
    layer = fn.Dense(3)
    _, params, _ = layer.init(jax.random.key(0), (-1, 4))
    x = jax.random.normal(jax.random.key(1), (5, 4))
    y, _ = layer.apply(params, (), x)
    np.testing.assert_allclose(y, x @ params["kernel"] + params["bias"][None], rtol=1e-6)
