"""``ops.norm.standardize``: the hand-written VJP against JAX's autodiff (float64), values, dtypes, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from funcnn.core import LayerConfigError
from funcnn.ops import norm
from funcnn.ops.norm import standardize
from funcnn.testing import check_vjp

pytestmark = pytest.mark.usefixtures("x64")

TOLERANCE = 1e-12

# (input shape, axes): 1-D to 3-D images over the channels, all feature axes, the spatial axes of a
# grouped layout (GroupNorm / InstanceNorm), non-contiguous and unsorted sets, and the batch axis.
GRID = [
    ((3, 7), -1),
    ((2, 9, 4), (1, 2)),
    ((2, 6, 5, 3), -1),
    ((2, 6, 5, 3), (3, 1)),
    ((2, 5, 4, 3, 2), (-4, -3, -2)),
    ((2, 4, 3, 2, 3, 2), (1, 2, 3, 5)),
    ((4, 5, 3), (0, 1)),
]


def _x(shape, seed=0):
    """Values with a nonzero mean and spread, so centring and scaling both matter."""
    return 1.5 + 2.0 * jax.random.normal(jax.random.key(seed), shape, jnp.float64)


def _numpy_standardize(x, axes, epsilon, center):
    x = np.asarray(x, np.float64)
    xc = x - x.mean(axis=axes, keepdims=True) if center else x
    return xc / np.sqrt(np.mean(xc**2, axis=axes, keepdims=True) + epsilon)


@pytest.mark.parametrize("center", [True, False])
@pytest.mark.parametrize("shape, axis", GRID)
def test_custom_rule_equals_autodiff(shape, axis, center):
    def custom(x):
        return standardize(x, axis, epsilon=1e-3, center=center)

    def autodiff(x):
        return standardize(x, axis, epsilon=1e-3, center=center, grad="autodiff")

    check_vjp(custom, _x(shape), reference=autodiff, rtol=TOLERANCE, atol=TOLERANCE)


@pytest.mark.parametrize("center", [True, False])
def test_custom_rule_matches_finite_differences(center):
    check_vjp(lambda x: standardize(x, (1, 2), epsilon=1e-2, center=center), _x((2, 4, 3)))


@pytest.mark.parametrize("center", [True, False])
@pytest.mark.parametrize("shape, axis", GRID[::3])
def test_values_match_a_numpy_reference(shape, axis, center):
    x = _x(shape)
    axes = tuple(a % len(shape) for a in (axis if isinstance(axis, tuple) else (axis,)))
    want = _numpy_standardize(x, axes, 1e-5, center)
    for grad in ("custom", "autodiff"):
        got = standardize(x, axis, center=center, grad=grad)
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-12, atol=1e-12)


def test_centred_standardize_equals_jax_nn_standardize():
    x = _x((2, 6, 5, 3))
    want = jax.nn.standardize(x, axis=(1, 2, 3), epsilon=1e-4)
    np.testing.assert_allclose(
        np.asarray(standardize(x, (1, 2, 3), epsilon=1e-4)), np.asarray(want), rtol=1e-12
    )


@settings(max_examples=6)
@given(
    shape=st.lists(st.integers(1, 4), min_size=2, max_size=4),
    data=st.data(),
    center=st.booleans(),
)
def test_custom_rule_equals_autodiff_for_any_axes(shape, data, center):
    rank = len(shape)
    axes = data.draw(st.lists(st.integers(0, rank - 1), min_size=1, unique=True))
    negative = data.draw(st.lists(st.booleans(), min_size=len(axes), max_size=len(axes)))
    axes = tuple(a - rank if spelt_negative else a for a, spelt_negative in zip(axes, negative, strict=True))
    x = _x(tuple(shape), seed=len(shape))

    def custom(x):
        return standardize(x, axes, epsilon=0.1, center=center)

    def autodiff(x):
        return standardize(x, axes, epsilon=0.1, center=center, grad="autodiff")

    check_vjp(custom, x, reference=autodiff, rtol=1e-11, atol=1e-11, num_cotangents=1)


@pytest.mark.parametrize("center", [True, False])
def test_second_order_gradients_agree(center):
    """The rule is written with jnp primitives, so its own gradient (a Hessian-vector product) exists."""
    x, v = _x((2, 5, 3)), _x((2, 5, 3), seed=3)

    def hvp(grad):
        def loss(x):
            return jnp.sum(jnp.sin(standardize(x, (1, 2), center=center, grad=grad)))

        return jax.jvp(jax.grad(loss), (x,), (v,))[1]

    np.testing.assert_allclose(np.asarray(hvp("custom")), np.asarray(hvp("autodiff")), rtol=1e-10, atol=1e-10)


def test_constant_input_gives_zeros_and_finite_gradients():
    x = jnp.full((2, 4, 3), 5.0)
    y, vjp = jax.vjp(lambda x: standardize(x, (1, 2)), x)
    np.testing.assert_array_equal(np.asarray(y), 0.0)
    (dx,) = vjp(jnp.ones_like(y))
    assert np.all(np.isfinite(np.asarray(dx)))


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_half_precision_input_keeps_float32_statistics(dtype):
    """A mean far above the spread: half-precision sums would lose the variance."""
    x32 = 100.0 + jax.random.normal(jax.random.key(0), (2, 64), jnp.float32)
    x = x32.astype(dtype)
    y = standardize(x)
    assert y.dtype == dtype
    rounded = np.asarray(x.astype(jnp.float32), np.float64)
    want = _numpy_standardize(rounded, (1,), 1e-5, True)
    np.testing.assert_allclose(np.asarray(y.astype(jnp.float32)), want, atol=1e-2)
    dx = jax.grad(lambda x: jnp.sum(standardize(x).astype(jnp.float32) * x32))(x)
    assert dx.dtype == dtype and np.all(np.isfinite(np.asarray(dx.astype(jnp.float32))))


def test_integer_input_is_standardised_in_the_default_float():
    y = standardize(jnp.arange(6).reshape(2, 3))
    assert y.dtype == jnp.float64
    np.testing.assert_allclose(np.asarray(y[0]), np.asarray(y[1]))


def test_under_jit_and_vmap():
    x = _x((3, 2, 5, 4))
    per_example = jax.vmap(lambda e: standardize(e, (0, 1)))(x)
    np.testing.assert_allclose(
        np.asarray(per_example), np.asarray(jax.jit(lambda x: standardize(x, (1, 2)))(x))
    )


def test_resolve_axes_sorts_and_makes_non_negative():
    assert norm.resolve_axes("t", "axis", (3, -3), (2, 5, 4, 3)) == (1, 3)
    assert norm.resolve_axes("t", "axis", -1, (2, 5)) == (1,)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: standardize(jnp.ones((2, 3)), 2), r"standardize: argument `axis`=2 is out of range \(or repeated\) for an input of shape \(2, 3\)"),
        (lambda: standardize(jnp.ones((2, 3)), (1, -1)), r"standardize: argument `axis`=\(1, -1\) is out of range \(or repeated\)"),
        (lambda: standardize(jnp.ones((2, 3)), 1.0), r"standardize: argument `axis` must be an integer or a tuple of integers, got 1.0 \(float\)"),
        (lambda: standardize(jnp.ones((2, 3)), ()), r"standardize: argument `axis` must be an integer or a tuple of integers, got \(\) \(tuple\)"),
        (lambda: standardize(jnp.ones((2, 3)), epsilon=0.0), r"standardize: argument `epsilon` must be > 0, got 0.0"),
        (lambda: standardize(jnp.ones((2, 3)), center=1), r"standardize: argument `center` must be True or False, got 1 \(int\)"),
        (lambda: standardize(jnp.ones((2, 3)), grad="fast"), r"standardize: argument `grad` must be one of \('custom', 'custom_vjp', 'autodiff'\), got 'fast'"),
        (lambda: standardize(jnp.ones((2, 3), jnp.complex64)), r"standardize: argument `x` has complex dtype complex64"),
    ],
)  # fmt: skip
def test_bad_arguments_are_refused(call, match):
    with pytest.raises(LayerConfigError, match=match):
        call()
