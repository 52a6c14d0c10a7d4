"""The hand-written activation VJPs against JAX's autodiff of the forward passes (float64)."""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax import lax
from jax.test_util import check_grads

from funcnn import ops
from funcnn.core import LayerConfigError
from funcnn.ops import activations
from funcnn.testing import check_vjp

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


# --- the activations added with the layers issue, and every rule of the elementwise helper ------

NEW_ACTIVATIONS = {
    "relu6": activations.relu6,
    "silu": activations.silu,
    "softplus": activations.softplus,
    "softplus(2, 1.5)": functools.partial(activations.softplus, beta=2.0, threshold=1.5),
    "softsign": activations.softsign,
    "selu": activations.selu,
    "celu": activations.celu,
    "celu(-2)": functools.partial(activations.celu, alpha=-2.0),
    "log_sigmoid": activations.log_sigmoid,
    "hard_sigmoid": activations.hard_sigmoid,
    "hard_silu": activations.hard_silu,
}
ELEMENTWISE = {name: fn for name, fn in ACTIVATIONS.items() if "softmax" not in name} | NEW_ACTIVATIONS
KINKS = {name: (0.0,) for name in KINKED} | {
    "relu6": (0.0, 6.0),
    "selu": (0.0,),
    "softplus(2, 1.5)": (0.75,),
    "hard_sigmoid": (-3.0, 3.0),
    "hard_silu": (-3.0, 3.0),
}
"""Where each activation is not differentiable (or, softplus at its threshold, not continuous)."""

SHAPES = {"1d": (2, 7, 3), "2d": (2, 5, 4, 3), "3d": (1, 3, 4, 2, 3), "empty": (0, 4, 3), "scalar": ()}
"""Channels-last images, 1-D to 3-D spatial, and the edge cases."""


def _with_kinks(name, shape, seed=0):
    """Random inputs whose first entries are the activation's kinks exactly, and 0."""
    x = _random(shape, seed).ravel()
    points = jnp.array((0.0, -0.0, *KINKS.get(name, ())))[: x.size]
    return x.at[: points.size].set(points).reshape(shape)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("name", sorted(NEW_ACTIVATIONS))
def test_new_activations_return_cotangents_in_the_primal_dtype(name, dtype):
    x = _random((2, 3, 4), 0, dtype)
    fn = NEW_ACTIVATIONS[name]
    y, dx = jax.eval_shape(lambda x: (fn(x), jax.vjp(fn, x)[1](x)[0]), x)
    assert y.dtype == dx.dtype == dtype


@pytest.mark.parametrize(
    "name, shape_id", [(name, list(SHAPES)[i % len(SHAPES)]) for i, name in enumerate(sorted(ELEMENTWISE))]
)
def test_custom_rule_matches_autodiff_through_check_vjp(name, shape_id):
    """Each activation on one of the shapes, in turn (the helper's rules do not see the shape)."""
    fn = ELEMENTWISE[name]
    check_vjp(
        jax.jit(fn),
        _with_kinks(name, SHAPES[shape_id]),
        reference=jax.jit(functools.partial(fn, grad="autodiff")),
        rtol=TOLERANCE,
        atol=TOLERANCE,
    )


def _derivative(fn, x, grad):
    return jax.jit(jax.vmap(jax.grad(lambda x: fn(x, grad=grad))))(jnp.asarray(x, jnp.float64))


SELU_ALPHA_PAPER = 1.6732632423543772848170429916717
SELU_SCALE_PAPER = 1.0507009873554804934193349852946


@pytest.mark.parametrize("grad", ["custom", "autodiff"])
@pytest.mark.parametrize(
    "name, fn, points, expected",
    [
        ("relu6", activations.relu6, [-1.0, 0.0, 3.0, 6.0, 7.0], [0, 0, 1, 0, 0]),
        ("hard_sigmoid", activations.hard_sigmoid, [-4.0, -3.0, 0.0, 3.0, 4.0], [0, 0, 1 / 6, 0, 0]),
        ("hard_silu", activations.hard_silu, [-4.0, -3.0, 0.0, 1.5, 3.0, 4.0], [0, 0, 0.5, 1.0, 1, 1]),
        ("selu", activations.selu, [0.0, 1.0], [SELU_SCALE_PAPER * SELU_ALPHA_PAPER, SELU_SCALE_PAPER]),
        ("celu(0.5)", functools.partial(activations.celu, alpha=0.5), [0.0, -1.0], [1.0, np.exp(-2.0)]),
        ("softsign", activations.softsign, [0.0, 1.0, -3.0], [1.0, 0.25, 1 / 16]),
    ],
)
def test_derivatives_at_the_kinks_follow_pytorch(name, fn, points, expected, grad):
    """At each kink the derivative is PyTorch's (and jax.nn's) one-sided choice, on both paths."""
    np.testing.assert_allclose(_derivative(fn, points, grad), expected, rtol=1e-15, atol=0, err_msg=name)


@pytest.mark.parametrize("grad", ["custom", "autodiff"])
def test_softplus_is_the_identity_above_its_threshold(grad):
    """PyTorch's rule: ``x`` where ``beta x > threshold``, else ``log(1 + e^(beta x)) / beta``."""
    beta, threshold = 2.0, 5.0
    x = jnp.array([2.5, np.nextafter(2.5, 3.0), 2.6, 100.0])
    fn = functools.partial(activations.softplus, beta=beta, threshold=threshold, grad=grad)
    np.testing.assert_array_equal(fn(x)[1:], x[1:])
    np.testing.assert_allclose(fn(x)[0], np.log1p(np.exp(5.0)) / 2, rtol=1e-15)
    sigmoid_5 = 1 / (1 + np.exp(-5.0))
    np.testing.assert_allclose(_derivative(fn, x, grad), [sigmoid_5, 1, 1, 1], rtol=1e-15)


@pytest.mark.parametrize("name", ["softplus", "log_sigmoid"])
def test_softplus_and_log_sigmoid_are_stable_at_extreme_inputs(name):
    """No overflow: at +-1000 the values are the exact limits (0 and x, or x and 0) in float64."""
    x = jnp.array([-1000.0, -40.0, 0.0, 40.0, 1000.0])
    fn = functools.partial(activations.softplus, threshold=1e30) if name == "softplus" else ELEMENTWISE[name]
    y, dx = fn(x), _derivative(fn, x, "custom")
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(dx))
    limits = (0.0, 1000.0) if name == "softplus" else (-1000.0, 0.0)
    np.testing.assert_array_equal((y[0], y[-1]), limits)
    np.testing.assert_allclose(dx, _derivative(fn, x, "autodiff"), rtol=TOLERANCE, atol=1e-300)


@pytest.mark.parametrize("name", ["relu", "relu6", "hard_sigmoid", "hard_silu"])
def test_an_infinite_cotangent_at_a_dead_unit_gives_zero(name):
    """Where f' is 0 on a region the rule selects, as jax.nn.relu's rule and PyTorch: 0, not inf * 0."""
    x = jnp.array([-10.0, 1.0])
    _, vjp = jax.vjp(ELEMENTWISE[name], x)
    dx = vjp(jnp.array([jnp.inf, 1.0]))[0]
    assert dx[0] == 0.0 and np.isfinite(dx[1])


@pytest.mark.parametrize("name", ["silu", "softplus(2, 1.5)", "celu(-2)", "gelu(erf)"])
def test_hessian_vector_products_match_autodiff(name):
    """Reverse over reverse through the hand-written rule: ``H v`` equals autodiff's."""
    fn = ELEMENTWISE[name]
    x, v = _random((3, 4), 2), _random((3, 4), 3)
    for kink in KINKS.get(name, ()):
        x = jnp.where(jnp.abs(x - kink) < 0.1, kink + 0.5, x)

    def hvp(grad):
        def grad_dot_v(x):
            return jnp.vdot(jax.grad(lambda x: jnp.sum(jnp.sin(fn(x, grad=grad))))(x), v)

        return jax.jit(jax.grad(grad_dot_v))(x)

    np.testing.assert_allclose(hvp("custom"), hvp("autodiff"), rtol=1e-11, atol=TOLERANCE)


def test_second_derivatives_of_silu_and_softplus_are_the_textbook_ones():
    x = jnp.linspace(-6.0, 6.0, 25)
    s = jax.nn.sigmoid(x)
    d2 = jax.jit(jax.vmap(jax.grad(jax.grad(activations.silu))))(x)
    np.testing.assert_allclose(d2, s * (1 - s) * (2 + x * (1 - 2 * s)), rtol=1e-12, atol=1e-15)
    d2 = jax.jit(jax.vmap(jax.grad(jax.grad(lambda x: activations.softplus(x, beta=2.0)))))(x)
    s2 = jax.nn.sigmoid(2 * x)
    np.testing.assert_allclose(d2, 2 * s2 * (1 - s2), rtol=1e-12, atol=1e-15)


# --- PReLU --------------------------------------------------------------------------------


def _prelu_input(shape, seed=0):
    """Random inputs with exact zeros (where the slope's derivative applies, as PyTorch's)."""
    x = _random(shape, seed)
    return jnp.where(jnp.abs(x) < 0.5, 0.0, x)


@pytest.mark.parametrize("shape_id", ["1d", "2d", "3d"])
@pytest.mark.parametrize("per_channel", [False, True], ids=["shared", "per_channel"])
def test_prelu_rule_matches_autodiff_for_x_and_slope(shape_id, per_channel):
    x = _prelu_input(SHAPES[shape_id])
    slope = jnp.linspace(-0.5, 0.7, x.shape[-1]) if per_channel else jnp.asarray(0.3)
    check_vjp(
        jax.jit(activations.prelu),
        x,
        slope,
        reference=jax.jit(functools.partial(activations.prelu, grad="autodiff")),
        rtol=TOLERANCE,
        atol=TOLERANCE,
    )


@pytest.mark.parametrize("shape", [(), (5,), (2, 0, 3)])
def test_prelu_rule_on_small_and_empty_inputs(shape):
    x = _prelu_input(shape)
    slopes = [jnp.asarray(0.2)] + ([jnp.full(shape[-1:], 0.2)] if shape else [])
    for slope in slopes:
        check_vjp(
            jax.jit(activations.prelu),
            x,
            slope,
            reference=jax.jit(functools.partial(activations.prelu, grad="autodiff")),
            rtol=TOLERANCE,
            atol=TOLERANCE,
        )


def test_prelu_gradients_by_hand():
    """``dL/dx = g`` or ``a g``; ``dL/da_c = sum of g x`` over channel c's entries with ``x <= 0``."""
    x = jnp.array([[1.0, -2.0], [0.0, -3.0], [-4.0, 5.0]])
    slope = jnp.array([0.1, 0.5])
    g = jnp.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    y, vjp = jax.vjp(activations.prelu, x, slope)
    dx, dslope = vjp(g)
    np.testing.assert_allclose(y, [[1.0, -1.0], [0.0, -1.5], [-0.4, 5.0]], rtol=1e-15)
    np.testing.assert_allclose(dx, [[1.0, 1.0], [0.3, 2.0], [0.5, 6.0]], rtol=1e-15)
    np.testing.assert_allclose(dslope, [3.0 * 0.0 + 5.0 * -4.0, 2.0 * -2.0 + 4.0 * -3.0], rtol=1e-15)
    _, dshared = jax.vjp(activations.prelu, x, jnp.asarray(0.1))[1](g)
    np.testing.assert_allclose(dshared, -20.0 - 4.0 - 12.0, rtol=1e-15)


def test_prelu_hessian_vector_product_matches_autodiff():
    x, v = _prelu_input((2, 3, 4), 1), _random((2, 3, 4), 2)
    slope, w = jnp.linspace(0.1, 0.4, 4), jnp.linspace(-1.0, 1.0, 4)

    def hvp(grad):
        def loss(x, a):
            return jnp.sum(jnp.sin(activations.prelu(x, a, grad=grad)))

        def grad_dot_v(x, a):
            gx, ga = jax.grad(loss, argnums=(0, 1))(x, a)
            return jnp.vdot(gx, v) + jnp.vdot(ga, w)

        return jax.jit(jax.grad(grad_dot_v, argnums=(0, 1)))(x, slope)

    for custom, autodiff in zip(hvp("custom"), hvp("autodiff"), strict=True):
        np.testing.assert_allclose(custom, autodiff, rtol=1e-11, atol=TOLERANCE)


@pytest.mark.parametrize(
    "x_dtype, slope_dtype, computed",
    [
        (jnp.float32, jnp.float32, jnp.float32),
        (jnp.bfloat16, jnp.bfloat16, jnp.bfloat16),
        (jnp.bfloat16, jnp.float32, jnp.float32),
        (jnp.float64, jnp.float32, jnp.float64),
    ],
)
def test_prelu_computes_in_the_wider_dtype_and_returns_cotangents_in_each(x_dtype, slope_dtype, computed):
    x = jnp.arange(-3, 3).astype(x_dtype).reshape(2, 3)
    slope = jnp.full((3,), 0.25, slope_dtype)
    y, vjp = jax.vjp(activations.prelu, x, slope)
    dx, dslope = vjp(y)
    assert (y.dtype, dx.dtype, dslope.dtype) == (computed, x_dtype, slope_dtype)


def test_prelu_promotes_integer_inputs_to_the_default_float():
    assert activations.prelu(jnp.arange(-2, 2), 0.25).dtype == jnp.float64  # x64 in this module


def test_prelu_composes_with_jit_and_vmap():
    xs, slope = _prelu_input((3, 2, 5), 4), jnp.linspace(0.1, 0.5, 5)

    def loss(a, x, grad="custom"):
        return jnp.sum(activations.prelu(x, a, grad=grad) ** 2)

    expected = jnp.stack([jax.grad(functools.partial(loss, grad="autodiff"))(slope, x) for x in xs])
    got = jax.jit(jax.vmap(jax.grad(loss), in_axes=(None, 0)))(slope, xs)
    np.testing.assert_allclose(got, expected, rtol=TOLERANCE, atol=TOLERANCE)


# --- argument checks ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: activations.relu6(jnp.ones(2), grad="fast"), "relu6: argument `grad` must be one of ('custom', 'custom_vjp', 'autodiff'), got 'fast'"),
        (lambda: activations.silu(jnp.ones(2, jnp.complex64)), "silu: argument `x` has complex dtype complex64 (shape (2,))"),
        (lambda: activations.selu("x"), "selu: argument `x` must be an array, got 'x' (str)"),
        (lambda: activations.softplus(jnp.ones(2), beta=0.0), "softplus: argument `beta` must be > 0, got 0.0"),
        (lambda: activations.softplus(jnp.ones(2), beta=-1), "softplus: argument `beta` must be > 0, got -1"),
        (lambda: activations.softplus(jnp.ones(2), threshold=float("nan")), "softplus: argument `threshold` must be a real number, got nan (float)"),
        (lambda: activations.softplus(jnp.ones(2), beta="2"), "softplus: argument `beta` must be a real number, got '2' (str)"),
        (lambda: activations.celu(jnp.ones(2), 0.0), "celu: argument `alpha` must be nonzero (CELU divides x by it), got 0.0"),
        (lambda: activations.celu(jnp.ones(2), 0), "celu: argument `alpha` must be nonzero (CELU divides x by it), got 0"),
        (lambda: activations.celu(jnp.ones(2), None), "celu: argument `alpha` must be a real number, got None (NoneType)"),
        (lambda: jax.jit(activations.celu).lower(jnp.ones(2), 1.0), "celu: argument `alpha` must be a static number (Python or NumPy), not a traced value"),
        (lambda: activations.hard_silu([1.0]), "hard_silu: argument `x` must be an array, got a list of 1 entries; convert it with jnp.asarray"),
        (lambda: activations.hard_sigmoid(jnp.ones(2), grad=False), "hard_sigmoid: argument `grad` must be one of ('custom', 'custom_vjp', 'autodiff'), got False"),
        (lambda: activations.log_sigmoid(np.array(["a"])), "log_sigmoid: argument `x` has non-numeric dtype <U1 (shape (1,))"),
        (lambda: activations.softsign(None), "softsign: argument `x` must be an array, got None (NoneType)"),
        (lambda: activations.prelu(jnp.ones((2, 4)), jnp.ones(3)), "prelu: argument `slope` has shape (3,) but x has shape (2, 4); expected () (one slope) or (4,) (one per channel)"),
        (lambda: activations.prelu(jnp.ones((2, 4)), jnp.ones((1, 4))), "prelu: argument `slope` has shape (1, 4) but x has shape (2, 4); expected () (one slope) or (4,)"),
        (lambda: activations.prelu(1.0, jnp.ones(1)), "prelu: argument `slope` has shape (1,) but x has shape (); expected ()"),
        (lambda: activations.prelu(jnp.ones(2), None), "prelu: argument `slope` must be an array, got None"),
        (lambda: activations.prelu(jnp.ones(2), jnp.ones((), jnp.complex64)), "prelu: argument `slope` has complex dtype complex64"),
        (lambda: activations.prelu(jnp.ones(2), 0.25, grad="auto"), "prelu: argument `grad` must be one of ('custom', 'custom_vjp', 'autodiff'), got 'auto'"),
    ],
)  # fmt: skip
def test_bad_arguments_are_named(call, message):
    with pytest.raises(LayerConfigError, match="^" + re.escape(message)):
        call()
