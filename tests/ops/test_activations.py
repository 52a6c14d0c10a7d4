"""The hand-written activation VJPs against JAX's autodiff of the forward passes (float64)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax import lax
from jax.test_util import check_grads

from funcnn import ops

pytestmark = pytest.mark.usefixtures("x64")

TOLERANCE = 1e-12

ACTIVATIONS = {
    "relu": ops.relu,
    "sigmoid": ops.sigmoid,
    "tanh": ops.tanh,
    "leaky_relu": ops.leaky_relu,
    "leaky_relu(0.2)": functools.partial(ops.leaky_relu, negative_slope=0.2),
    "elu": ops.elu,
    "elu(0.5)": functools.partial(ops.elu, alpha=0.5),
    "gelu(tanh)": functools.partial(ops.gelu, approximate=True),
    "gelu(erf)": functools.partial(ops.gelu, approximate=False),
    "softmax": ops.softmax,
    "softmax(axis=0)": functools.partial(ops.softmax, axis=0),
    "softmax(axis=1)": functools.partial(ops.softmax, axis=1),
    "softmax(axis=(1, 2))": functools.partial(ops.softmax, axis=(1, 2)),
    "log_softmax": ops.log_softmax,
    "log_softmax(axis=0)": functools.partial(ops.log_softmax, axis=0),
    "log_softmax(axis=-2)": functools.partial(ops.log_softmax, axis=-2),
}
KINKED = {"relu", "leaky_relu", "leaky_relu(0.2)", "elu", "elu(0.5)"}
"""Not differentiable at 0: inputs keep away from it where a check needs smoothness."""


def _random(shape, seed=0, dtype=jnp.float64):
    return 3 * jax.random.normal(jax.random.key(seed), shape, dtype)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _vjp(name, grad, x, g):
    y, vjp = jax.vjp(lambda x: ACTIVATIONS[name](x, grad=grad), x)
    return y, vjp(g)[0]


def _assert_custom_matches_autodiff(name, x):
    g = _random(x.shape, 1)
    for custom, autodiff in zip(_vjp(name, "custom", x, g), _vjp(name, "autodiff", x, g)):
        assert custom.shape == autodiff.shape
        np.testing.assert_allclose(custom, autodiff, rtol=0, atol=TOLERANCE, err_msg=name)


def _cases():
    """Every activation on a 3-D, a zero-size and (those without an axis argument) a 1-D input."""
    shapes = {"3d": (2, 3, 4), "empty": (0, 3, 4), "1d": (5,)}
    for name in sorted(ACTIVATIONS):
        for shape_id, shape in shapes.items():
            if shape_id != "1d" or "axis" not in name:
                yield pytest.param(name, shape, id=f"{name}-{shape_id}")


@pytest.mark.parametrize("name, shape", list(_cases()))
def test_custom_matches_autodiff(name, shape):
    _assert_custom_matches_autodiff(name, _random(shape))


@settings(max_examples=8)
@given(
    name=st.sampled_from(sorted(n for n in ACTIVATIONS if "axis" not in n)),
    shape=st.lists(st.integers(0, 4), min_size=1, max_size=3),
)
def test_custom_matches_autodiff_hypothesis(name, shape):
    _assert_custom_matches_autodiff(name, _random(tuple(shape)))


def test_values_at_and_around_the_kinks():
    """Kinked activations at exactly 0 and just either side: the rule matches autodiff."""
    x = jnp.array([-1e-300, -0.0, 1e-300, -1.0, 1.0])
    for name in sorted(KINKED - {"relu"}):
        _assert_custom_matches_autodiff(name, x)


def test_relu_gradient_at_zero_is_zero_as_jax_nn_relu():
    x = jnp.array([-1.0, 0.0, 1.0])
    np.testing.assert_array_equal(jax.grad(lambda x: jnp.sum(ops.relu(x)))(x), [0.0, 0.0, 1.0])
    np.testing.assert_array_equal(
        jax.grad(lambda x: jnp.sum(ops.relu(x)))(x), jax.grad(lambda x: jnp.sum(jax.nn.relu(x)))(x)
    )


def test_relu_autodiff_path_uses_the_same_convention_at_zero():
    """Both paths give ReLU'(0) = 0, as jax.nn.relu (jnp.maximum(x, 0) would give 1/2)."""
    x = jnp.array([0.0])
    np.testing.assert_array_equal(jax.grad(lambda x: jnp.sum(ops.relu(x, grad="autodiff")))(x), [0.0])


def test_softmax_rules_at_extreme_logits():
    """Saturated and -inf logits: gradients stay finite and match autodiff."""
    x = jnp.array([[-jnp.inf, 0.0, 1.0], [1000.0, -1000.0, 0.0], [0.0, 0.0, 0.0]])
    for name in ("softmax", "log_softmax"):
        g = _random(x.shape, 1)
        custom = _vjp(name, "custom", x, g)[1]
        assert np.all(np.isfinite(custom))
        np.testing.assert_allclose(custom, _vjp(name, "autodiff", x, g)[1], rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_second_order(name):
    x = _random((2, 3, 4), 2)
    if name in KINKED:
        x = jnp.where(jnp.abs(x) < 0.1, 0.5, x)
    check_grads(ACTIVATIONS[name], (x,), order=2, modes=["rev"])


def test_composes_with_vmap_jit_and_scan():
    xs = _random((3, 2, 5))

    def loss(x, grad="custom"):
        h = ops.gelu(ops.elu(x, grad=grad), grad=grad)
        return jnp.sum(ops.log_softmax(ops.tanh(h, grad=grad), grad=grad) * ops.sigmoid(x, grad=grad))

    expected = jnp.stack([jax.grad(functools.partial(loss, grad="autodiff"))(x) for x in xs])
    np.testing.assert_allclose(jax.jit(jax.vmap(jax.grad(loss)))(xs), expected, rtol=0, atol=TOLERANCE)
    _, scanned = lax.scan(lambda c, x: (c, jax.grad(loss)(x)), 0.0, xs)
    np.testing.assert_allclose(scanned, expected, rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_cotangents_keep_the_primal_dtype(name, dtype):
    x = _random((2, 3, 4), 0, dtype)
    fn = ACTIVATIONS[name]
    assert jax.eval_shape(lambda x: jax.vjp(fn, x)[1](x)[0], x).dtype == dtype
