"""Ceil-mode and dilated pooling, winner indices and max unpooling against PyTorch in float64:
values, indices and gradients to 1e-10.

funcnn is channels-last, PyTorch channels-first: inputs and cotangents are moved between the two
layouts. PyTorch's indices are flat indices into each example-channel's spatial input, as funcnn's,
so they compare exactly (inputs are random normal: no ties; ties are tested against the naive
reference in ``test_pool.py``).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from funcnn import LayerConfigError, ops
from funcnn.layers.pool import MaxPool, MaxUnpool
from funcnn.ops.pool import max_unpool

torch = pytest.importorskip("torch")
F = torch.nn.functional

pytestmark = [pytest.mark.usefixtures("x64"), pytest.mark.slow]  # PyTorch agreement: in `make test-slow`

TOLERANCE = dict(rtol=1e-10, atol=1e-12)


def _to_torch(a, grad=False):
    t = torch.from_numpy(np.moveaxis(np.asarray(a), -1, 1).copy())
    return t.requires_grad_(True) if grad else t


def _from_torch(t):
    return np.moveaxis(t.detach().numpy(), 1, -1)


def _torch_pool(kind, rank):
    return getattr(F, f"{kind}_pool{rank}d")


@functools.partial(jax.jit, static_argnums=0)
def _value_and_vjp(f, x, g):
    y, pullback = jax.vjp(f, x)
    return y, pullback(g)[0]


def _compare(ours, theirs, x, seed=1):
    """``ours(x)`` (channels-last) and ``theirs(x_t)`` (channels-first): values, and the VJP of one
    random cotangent."""
    g = jax.random.normal(jax.random.key(seed), jax.eval_shape(ours, x).shape, jnp.float64)
    y, dx = _value_and_vjp(ours, x, g)
    x_t = _to_torch(x, grad=True)
    y_t = theirs(x_t)
    y_t.backward(_to_torch(g))
    np.testing.assert_allclose(y, _from_torch(y_t), **TOLERANCE)
    np.testing.assert_allclose(dx, _from_torch(x_t.grad), **TOLERANCE)


CEIL_CASES = [
    # spatial, window, stride, padding (PyTorch's padding is symmetric)
    ((7,), 2, 2, 0),
    ((8,), 3, 2, 1),
    ((2,), 3, 2, 0),
    ((7, 6), 3, 2, 1),
    ((6, 9), (2, 3), (3, 2), (1, 1)),
    ((5, 4, 6), 2, 2, 1),
    ((4, 5, 3), (3, 2, 2), 2, 0),
]


@pytest.mark.parametrize("spatial, window, stride, padding", CEIL_CASES)
def test_ceil_mode_max_pool_matches_torch(spatial, window, stride, padding):
    x = jax.random.normal(jax.random.key(0), (2, *spatial, 3), jnp.float64)
    _compare(
        lambda x: ops.max_pool(x, window, stride, padding, ceil_mode=True),
        lambda x: _torch_pool("max", len(spatial))(x, window, stride, padding, ceil_mode=True),
        x,
    )


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("spatial, window, stride, padding", CEIL_CASES)
def test_ceil_mode_avg_pool_matches_torch(spatial, window, stride, padding, count_include_pad):
    x = jax.random.normal(jax.random.key(0), (2, *spatial, 3), jnp.float64)
    _compare(
        lambda x: ops.avg_pool(
            x, window, stride, padding, ceil_mode=True, count_include_pad=count_include_pad
        ),
        lambda x: _torch_pool("avg", len(spatial))(
            x, window, stride, padding, ceil_mode=True, count_include_pad=count_include_pad
        ),
        x,
    )


DILATED = [
    # spatial, window, stride, padding, dilation, ceil_mode
    ((9,), 3, 1, 0, 2, False),
    ((10,), 2, 3, 1, 3, True),
    ((8, 7), 3, (1, 2), 1, (2, 1), False),
    ((7, 8), 2, 2, 1, 2, True),
    ((9, 8), 3, 2, 1, 3, True),
    ((5, 6, 5), 2, 1, (1, 0, 1), (2, 3, 1), False),
    ((6, 5, 7), 2, 2, 1, 2, True),
]


@pytest.mark.parametrize("spatial, window, stride, padding, dilation, ceil_mode", DILATED)
def test_dilated_max_pool_and_indices_match_torch(spatial, window, stride, padding, dilation, ceil_mode):
    x = jax.random.normal(jax.random.key(2), (2, *spatial, 3), jnp.float64)
    pool = _torch_pool("max", len(spatial))
    kwargs = dict(dilation=dilation, ceil_mode=ceil_mode)
    _compare(
        lambda x: ops.max_pool(x, window, stride, padding, **kwargs),
        lambda x: pool(x, window, stride, padding, **kwargs),
        x,
    )
    _, indices = jax.jit(lambda x: ops.max_pool(x, window, stride, padding, return_indices=True, **kwargs))(x)
    _, expected = pool(_to_torch(x), window, stride, padding, return_indices=True, **kwargs)
    np.testing.assert_array_equal(indices, _from_torch(expected))


@pytest.mark.parametrize(
    "spatial, window, stride, padding, output_size",
    [
        ((8,), 2, None, 0, None),
        ((9,), 3, 2, 1, (9,)),
        ((6, 8), 2, None, 0, None),
        ((7, 5), 3, 2, 1, (7, 5)),
        ((7, 6), (2, 3), (2, 3), 0, (7, 6)),
        ((4, 6, 4), 2, None, 0, None),
        ((5, 4, 7), (3, 2, 2), 2, 1, (5, 4, 7)),
    ],
)
def test_max_unpool_matches_torch(spatial, window, stride, padding, output_size):
    """Pool, then unpool to the pooled input's size: values and the gradient of the values."""
    rank = len(spatial)
    x = jax.random.normal(jax.random.key(3), (2, *spatial, 3), jnp.float64)
    y, indices = jax.jit(lambda x: ops.max_pool(x, window, stride, padding, return_indices=True))(x)
    y_t, indices_t = _torch_pool("max", rank)(_to_torch(x), window, stride, padding, return_indices=True)
    np.testing.assert_array_equal(indices, _from_torch(indices_t))
    unpool_t = getattr(F, f"max_unpool{rank}d")
    _compare(
        lambda v: max_unpool(v, indices, window, stride, padding, output_size),
        lambda v: unpool_t(v, indices_t, window, stride, padding, output_size),
        y,
    )


def test_overlapping_windows_unpool_like_torch():
    """Windows that share a winner: one value in place, and both copies get its gradient."""
    x = jax.random.normal(jax.random.key(4), (2, 7, 6, 2), jnp.float64)
    y, indices = jax.jit(lambda x: ops.max_pool(x, 3, 1, 1, return_indices=True))(x)
    _, indices_t = F.max_pool2d(_to_torch(x), 3, 1, 1, return_indices=True)
    np.testing.assert_array_equal(indices, _from_torch(indices_t))
    assert len(np.unique(np.asarray(indices[0, ..., 0]))) < indices[0, ..., 0].size  # shared winners
    _compare(
        lambda v: max_unpool(v, indices, 3, 1, 1, (7, 6)),
        lambda v: F.max_unpool2d(v, indices_t, 3, 1, 1, (7, 6)),
        y,
    )


def test_segnet_round_trip_matches_torch_layers():
    """``MaxPool(return_indices=True)`` then ``MaxUnpool`` as layers, against the nn modules."""
    x = jax.random.normal(jax.random.key(5), (2, 7, 9, 3), jnp.float64)
    pool, unpool = (
        MaxPool(3, 2, 1, ceil_mode=True, return_indices=True),
        MaxUnpool(3, 2, 1, output_size=(7, 9)),
    )
    pool_t = torch.nn.MaxPool2d(3, 2, 1, ceil_mode=True, return_indices=True)
    unpool_t = torch.nn.MaxUnpool2d(3, 2, 1)
    _compare(
        lambda x: unpool.apply((), (), pool.apply((), (), x)[0])[0],
        lambda x: unpool_t(*pool_t(x), output_size=(7, 9)),
        x,
    )


def test_padding_limit_is_half_the_undilated_window_as_in_torch():
    x = jax.random.normal(jax.random.key(6), (2, 9, 2), jnp.float64)
    with pytest.raises(RuntimeError, match="half of kernel size"):
        F.max_pool1d(_to_torch(x), 3, 1, 2, dilation=2)
    with pytest.raises(LayerConfigError, match=r"argument `padding` 2 must be at most half the window 3"):
        ops.max_pool(x, 3, 1, 2, dilation=2)
    _compare(
        lambda x: ops.max_pool(x, 3, 1, 1, dilation=2),  # padding 1 <= 3 // 2, though the window spans 5
        lambda x: F.max_pool1d(x, 3, 1, 1, dilation=2),
        x,
    )


def test_a_nan_window_points_at_its_first_nan_where_torch_points_at_its_last():
    """The one deviation: funcnn's index follows its gradient's rule (the first NaN, as XLA's
    select-and-scatter and argmax); PyTorch's CPU kernel keeps updating on every NaN. Ties of
    numbers go to the first maximum in both."""
    x = jnp.array([1.0, jnp.nan, 3.0, jnp.nan, 3.0, 2.0])[None, :, None]
    _, ours = ops.max_pool(x, 6, return_indices=True)
    _, theirs = F.max_pool1d(_to_torch(x), 6, return_indices=True)
    assert (int(ours[0, 0, 0]), int(theirs[0, 0, 0])) == (1, 3)
    ties = jnp.array([1.0, 3.0, 2.0, 3.0])[None, :, None]
    _, ours = ops.max_pool(ties, 4, return_indices=True)
    _, theirs = F.max_pool1d(_to_torch(ties), 4, return_indices=True)
    assert int(ours[0, 0, 0]) == int(theirs[0, 0, 0]) == 1
