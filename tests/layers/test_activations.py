"""Activation layers: values against ``jax.nn``, argument checks, the dtype policy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcnn as fn


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
        (fn.Softmax(axis=(0, 1)), lambda x: jax.nn.softmax(x, axis=(0, 1))),
    ],
    ids=lambda v: fn.identity.layer_name(v) if isinstance(v, fn.Layer) else "",
)
def test_activation_values(layer, reference):
    x = jnp.linspace(-3.0, 3.0, 24).reshape(2, 12)
    np.testing.assert_allclose(layer.apply((), (), x)[0], reference(x), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("layer", [fn.Relu(), fn.Sigmoid(), fn.Softmax(), fn.Gelu()])
def test_integer_inputs_become_the_default_float(layer):
    y, _ = layer.apply((), (), jnp.array([[0, 1, 2]], jnp.int32))
    assert y.dtype == jnp.float32


def test_softmax_axis_out_of_range_is_named_with_the_shape():
    with pytest.raises(
        fn.LayerConfigError, match=r"Softmax: argument `axis`=2 is out of range \(or repeated\) for an input of shape \(2, 3\)"
    ):
        fn.Softmax(axis=2).apply((), (), jnp.ones((2, 3)))
