"""The hand-written dense VJP against JAX's autodiff of the forward pass (float64)."""

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


def _random(shape, seed, dtype=jnp.float64):
    return jax.random.normal(jax.random.key(seed), shape, dtype)


@functools.partial(jax.jit, static_argnames="grad")
def _vjp(x, kernel, bias, g, grad):
    """Output and ``(dx, dkernel, dbias)`` for cotangent ``g``."""
    y, vjp = jax.vjp(lambda x, k, b: ops.dense(x, k, b, grad=grad), x, kernel, bias)
    return (y, *vjp(g))


def _assert_custom_matches_autodiff(batch, n_in, n_out, use_bias=True):
    x = _random((*batch, n_in), 0)
    kernel = _random((n_in, n_out), 1)
    bias = _random((n_out,), 2) if use_bias else None
    g = _random((*batch, n_out), 3)
    custom = _vjp(x, kernel, bias, g, "custom")
    autodiff = _vjp(x, kernel, bias, g, "autodiff")
    assert (custom[3] is None) == (not use_bias)
    for name, got, expected in zip(("y", "dx", "dkernel", "dbias"), custom, autodiff):
        if expected is not None:
            assert got.shape == expected.shape, name
            np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE, err_msg=name)


@pytest.mark.parametrize("use_bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize(
    "batch",
    [(), (5,), (2, 3), (2, 1, 3), (0,), (2, 0, 3)],
    ids=["unbatched", "batch", "two-axes", "three-axes", "empty", "empty-middle"],
)
def test_custom_matches_autodiff(batch, use_bias):
    _assert_custom_matches_autodiff(batch, 4, 3, use_bias)


@settings(max_examples=6)
@given(
    batch=st.lists(st.integers(0, 3), max_size=3),
    n_in=st.integers(1, 5),
    n_out=st.integers(1, 5),
    use_bias=st.booleans(),
)
def test_custom_matches_autodiff_hypothesis(batch, n_in, n_out, use_bias):
    _assert_custom_matches_autodiff(tuple(batch), n_in, n_out, use_bias)


def test_the_equations_by_hand():
    """dX = G W^T, dW = X^T G (summed over the batch), db = sum_batch G."""
    x = _random((2, 3, 4), 0)
    kernel = _random((4, 5), 1)
    g = _random((2, 3, 5), 3)
    _, dx, dkernel, dbias = _vjp(x, kernel, jnp.zeros(5), g, "custom")
    np.testing.assert_allclose(dx, g @ kernel.T, rtol=1e-13)
    np.testing.assert_allclose(dkernel, x.reshape(6, 4).T @ g.reshape(6, 5), rtol=1e-13)
    np.testing.assert_allclose(dbias, g.sum(axis=(0, 1)), rtol=1e-13)


@pytest.mark.parametrize("use_bias", [True, False], ids=["bias", "no-bias"])
def test_second_order(use_bias):
    x, kernel = _random((3, 4), 0), _random((4, 2), 1)
    if use_bias:
        check_grads(lambda x, k, b: ops.dense(x, k, b), (x, kernel, _random((2,), 2)), order=2, modes=["rev"])
    else:
        check_grads(lambda x, k: ops.dense(x, k), (x, kernel), order=2, modes=["rev"])


def test_composes_with_vmap_jit_and_scan():
    xs, kernel, bias = _random((4, 3, 5), 0), _random((5, 2), 1), _random((2,), 2)

    def loss(params, x, grad="custom"):
        return jnp.sum(jnp.tanh(ops.dense(x, *params, grad=grad)) ** 2)

    expected = jnp.stack([jax.grad(loss)((kernel, bias), x, "autodiff")[0] for x in xs])
    per_example = jax.jit(jax.vmap(jax.grad(loss), in_axes=(None, 0)))((kernel, bias), xs)[0]
    np.testing.assert_allclose(per_example, expected, rtol=0, atol=TOLERANCE)

    def body(total, x):
        return total + jax.grad(loss)((kernel, bias), x)[0], None

    summed, _ = lax.scan(body, jnp.zeros_like(kernel), xs)
    np.testing.assert_allclose(summed, expected.sum(0), rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("use_bias", [True, False], ids=["bias", "no-bias"])
def test_cotangents_keep_the_primal_dtypes(dtype, use_bias):
    x, kernel = _random((3, 4), 0, dtype), _random((4, 2), 1, dtype)
    bias = _random((2,), 2, dtype) if use_bias else None
    _, dx, dkernel, dbias = _vjp(x, kernel, bias, _random((3, 2), 3, dtype), "custom")
    assert dx.dtype == dkernel.dtype == dtype
    assert dbias is None if bias is None else dbias.dtype == dtype


def test_precision_reaches_the_backward_pass():
    x, kernel = _random((3, 4), 0), _random((4, 2), 1)
    grads = jax.grad(
        lambda x, k: jnp.sum(ops.dense(x, k, precision=lax.Precision.HIGHEST) ** 2), argnums=(0, 1)
    )
    expected = jax.grad(lambda x, k: jnp.sum(ops.dense(x, k, grad="autodiff") ** 2), argnums=(0, 1))
    for got, want in zip(grads(x, kernel), expected(x, kernel)):
        np.testing.assert_allclose(got, want, rtol=0, atol=TOLERANCE)
