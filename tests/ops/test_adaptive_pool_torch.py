"""Adaptive pooling against PyTorch's ``AdaptiveAvgPool{1,2,3}d`` and ``AdaptiveMaxPool{1,2,3}d``
(float64, forward and gradients; funcnn is channels-last, PyTorch channels-first)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from funcnn.layers.adaptive_pool import AdaptiveAvgPool, AdaptiveMaxPool
from funcnn.ops.adaptive_pool import adaptive_avg_pool, adaptive_max_pool

torch = pytest.importorskip("torch")

pytestmark = [pytest.mark.usefixtures("x64"), pytest.mark.slow]  # PyTorch agreement: in `make test-slow`

TOLERANCE = 1e-10
CASES = [
    ((10,), 4),
    ((3,), 7),
    ((9,), 3),
    ((7,), (None,)),
    ((7, 9), (3, 4)),
    ((5, 6), (None, 4)),
    ((3, 4), (5, 9)),
    ((8, 6), (4, 3)),
    ((28, 28), 5),
    ((4, 5, 6), (2, 3, 4)),
    ((3, 4, 2), (5, None, 3)),
    ((6, 5, 4), 1),
]
IDS = [f"{'x'.join(map(str, s))}->{o}" for s, o in CASES]
OPS = {"avg": adaptive_avg_pool, "max": adaptive_max_pool}


def _torch_pool(kind, rank, output_size):
    name = f"Adaptive{'Avg' if kind == 'avg' else 'Max'}Pool{rank}d"
    return getattr(torch.nn, name)(output_size)


def _torch_value_and_grad(kind, x, g, output_size):
    """PyTorch's output and ``dL/dX`` for ``L = <Y, g>``, channels-last in and out."""
    rank = x.ndim - 2
    if rank == 1 and isinstance(output_size, tuple):  # AdaptiveAvgPool1d takes an int only
        output_size = output_size[0] or x.shape[1]
    xt = torch.tensor(np.moveaxis(np.asarray(x), -1, 1), requires_grad=True)
    y = _torch_pool(kind, rank, output_size)(xt)
    y.backward(torch.tensor(np.moveaxis(np.asarray(g), -1, 1)))
    return np.moveaxis(y.detach().numpy(), 1, -1), np.moveaxis(xt.grad.numpy(), 1, -1)


def _inputs(shape, values, seed=0):
    rng = np.random.default_rng(seed)
    if values == "ties":  # values from {0, 1, 2}: ties in every window
        return jnp.asarray(rng.integers(0, 3, shape).astype(np.float64))
    return jnp.asarray(rng.normal(size=shape))


@pytest.mark.parametrize(
    "kind, values", [("avg", "normal"), ("max", "normal"), ("max", "ties")], ids=["avg", "max", "max-ties"]
)
@pytest.mark.parametrize("spatial, output_size", CASES, ids=IDS)
def test_values_and_gradients_equal_pytorchs(spatial, output_size, kind, values):
    x = _inputs((2, *spatial, 3), values)
    y, vjp = jax.vjp(jax.jit(lambda x: OPS[kind](x, output_size)), x)
    g = jax.random.normal(jax.random.key(1), y.shape, jnp.float64)
    dx = vjp(g)[0]
    y_torch, dx_torch = _torch_value_and_grad(kind, x, g, output_size)
    assert y.shape == y_torch.shape
    np.testing.assert_allclose(y, y_torch, rtol=TOLERANCE, atol=TOLERANCE)
    np.testing.assert_allclose(dx, dx_torch, rtol=TOLERANCE, atol=TOLERANCE)


@pytest.mark.parametrize("layer, kind", [(AdaptiveAvgPool, "avg"), (AdaptiveMaxPool, "max")])
def test_layers_equal_pytorchs_modules(layer, kind):
    x = _inputs((2, 11, 7, 4), "normal")
    model = layer((4, 3))
    out_shape, params, state = model.init(jax.random.key(0), (-1, 11, 7, 4))
    y, vjp = jax.vjp(lambda x: model.apply(params, state, x)[0], x)
    g = jax.random.normal(jax.random.key(1), y.shape, jnp.float64)
    y_torch, dx_torch = _torch_value_and_grad(kind, x, g, (4, 3))
    assert out_shape[1:] == y_torch.shape[1:]
    np.testing.assert_allclose(y, y_torch, rtol=TOLERANCE, atol=TOLERANCE)
    np.testing.assert_allclose(vjp(g)[0], dx_torch, rtol=TOLERANCE, atol=TOLERANCE)


def test_max_winners_equal_pytorchs_indices():
    """PyTorch's ``return_indices`` (the flat position of each window's first maximum in row-major
    order) are where funcnn's gradient of each output lands."""
    x = _inputs((1, 7, 9, 1), "ties")
    _, indices = torch.nn.functional.adaptive_max_pool2d(
        torch.tensor(np.moveaxis(np.asarray(x), -1, 1)), (3, 4), return_indices=True
    )
    y, vjp = jax.vjp(lambda x: adaptive_max_pool(x, (3, 4)), x)
    for position in np.ndindex(3, 4):
        g = jnp.zeros(y.shape).at[(0, *position, 0)].set(1.0)
        landed = np.flatnonzero(np.asarray(vjp(g)[0]).ravel())
        assert landed.tolist() == [int(indices[(0, 0, *position)])]
