"""The new activations and PReLU against PyTorch in float64: values and gradients to 1e-10.

funcnn is channels-last, PyTorch channels-first: PReLU's per-channel slope
follows axis 1 in PyTorch and the last axis here, so inputs are moved between
the two layouts. Inputs include each function's kinks exactly, where both
libraries pick the same one-sided derivative.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from funcnn.layers.activations import PRelu
from funcnn.ops import activations

torch = pytest.importorskip("torch")
F = torch.nn.functional

pytestmark = [pytest.mark.usefixtures("x64"), pytest.mark.slow]  # PyTorch agreement: in `make test-slow`

TOLERANCE = dict(rtol=1e-10, atol=1e-12)

KINKS = (-3.0, 0.0, 3.0, 6.0, 2.5, 20.0, -20.0, 40.0, -40.0)
"""relu6 (0, 6), the hard functions (-3, 3), softplus(2, 5)'s threshold 2.5, softplus's 20, and
large inputs where stability and saturation matter."""

CASES = {
    "relu6": (activations.relu6, F.relu6),
    "silu": (activations.silu, F.silu),
    "softplus": (activations.softplus, F.softplus),
    "softplus(beta=2, threshold=5)": (
        functools.partial(activations.softplus, beta=2.0, threshold=5.0),
        functools.partial(F.softplus, beta=2.0, threshold=5.0),
    ),
    "softplus(beta=0.5)": (
        functools.partial(activations.softplus, beta=0.5),
        functools.partial(F.softplus, beta=0.5),
    ),
    "softsign": (activations.softsign, F.softsign),
    "selu": (activations.selu, F.selu),
    "celu": (activations.celu, F.celu),
    # PyTorch's celu backward computes 1 / alpha in float32: alphas exact in float32 compare to 1e-10.
    "celu(alpha=2)": (functools.partial(activations.celu, alpha=2.0), functools.partial(F.celu, alpha=2.0)),
    "celu(alpha=-0.5)": (
        functools.partial(activations.celu, alpha=-0.5),
        functools.partial(F.celu, alpha=-0.5),
    ),
    "log_sigmoid": (activations.log_sigmoid, F.logsigmoid),
    "hard_sigmoid": (activations.hard_sigmoid, F.hardsigmoid),
    "hard_silu": (activations.hard_silu, F.hardswish),
}

GRADIENT_TOLERANCE = {"hard_sigmoid": dict(rtol=1e-7, atol=0)}
"""PyTorch's hardsigmoid backward multiplies by a float32 ``1/6`` (0.1666666716...), even in
float64: its gradient agrees to float32 precision only; funcnn's is ``1/6`` in float64, as
``jax.nn.hard_sigmoid``'s autodiff (tested against it to 1e-12 in test_activations.py)."""


def _inputs(shape, seed=0):
    x = 4 * np.random.default_rng(seed).standard_normal(int(np.prod(shape)))
    x[: len(KINKS)] = KINKS
    return x.reshape(shape)


def _torch_value_and_grad(torch_fn, x, g, *extra):
    tx = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    textra = [torch.tensor(e, dtype=torch.float64, requires_grad=True) for e in extra]
    y = torch_fn(tx, *textra)
    y.backward(torch.tensor(g, dtype=torch.float64))
    return y.detach().numpy(), tx.grad.numpy(), [e.grad.numpy() for e in textra]


@pytest.mark.parametrize("grad", ["custom", "autodiff"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_activation_matches_pytorch(name, grad):
    ours, theirs = CASES[name]
    x = _inputs((2, 4, 5, 3))
    g = np.random.default_rng(1).standard_normal(x.shape)
    y, vjp = jax.vjp(lambda x: ours(x, grad=grad), jnp.asarray(x))
    expected_y, expected_dx, _ = _torch_value_and_grad(theirs, x, g)
    np.testing.assert_allclose(y, expected_y, **TOLERANCE, err_msg=f"{name} value")
    np.testing.assert_allclose(
        vjp(jnp.asarray(g))[0],
        expected_dx,
        **GRADIENT_TOLERANCE.get(name, TOLERANCE),
        err_msg=f"{name} gradient",
    )


def _channels_first(x):
    return np.moveaxis(x, -1, 1)


@pytest.mark.parametrize("grad", ["custom", "autodiff"])
@pytest.mark.parametrize("spatial", [(7,), (4, 5), (2, 3, 4)], ids=["1d", "2d", "3d"])
@pytest.mark.parametrize("per_channel", [False, True], ids=["shared", "per_channel"])
def test_prelu_matches_pytorch_including_the_slope_gradient(per_channel, spatial, grad):
    channels = 3
    x = _inputs((2, *spatial, channels), 2)
    x[0, ..., 0] = 0.0  # PyTorch's slope applies at x = 0 too
    g = np.random.default_rng(3).standard_normal(x.shape)
    slope = np.array([0.25, -0.4, 1.3]) if per_channel else np.array(0.25)
    y, vjp = jax.vjp(lambda x, a: activations.prelu(x, a, grad=grad), jnp.asarray(x), jnp.asarray(slope))
    dx, dslope = vjp(jnp.asarray(g))
    # PyTorch's weight is (C,) or (1,), its channels on axis 1.
    torch_slope = slope if per_channel else slope.reshape(1)
    expected_y, expected_dx, (expected_dslope,) = _torch_value_and_grad(
        F.prelu, _channels_first(x), _channels_first(g), torch_slope
    )
    np.testing.assert_allclose(_channels_first(y), expected_y, **TOLERANCE)
    np.testing.assert_allclose(_channels_first(dx), expected_dx, **TOLERANCE)
    np.testing.assert_allclose(np.reshape(dslope, expected_dslope.shape), expected_dslope, **TOLERANCE)


@pytest.mark.parametrize("per_channel", [False, True], ids=["shared", "per_channel"])
def test_prelu_layer_matches_torch_nn_prelu(per_channel):
    """The layer's initial slope (0.25) and parameter gradient, as ``torch.nn.PReLU(num_parameters)``."""
    x = _inputs((3, 5, 5, 4), 4)
    layer = PRelu(per_channel=per_channel, param_dtype=jnp.float64)
    _, params, state = layer.init(jax.random.key(0), (-1, 5, 5, 4))

    def loss(params, x):
        return jnp.sum(jnp.tanh(layer.apply(params, state, x)[0]))

    value, grads = jax.value_and_grad(loss)(params, jnp.asarray(x))
    module = torch.nn.PReLU(num_parameters=4 if per_channel else 1).double()
    tx = torch.tensor(_channels_first(x))
    expected = torch.tanh(module(tx)).sum()
    expected.backward()
    np.testing.assert_allclose(value, expected.item(), **TOLERANCE)
    np.testing.assert_allclose(
        np.reshape(grads["slope"], module.weight.shape), module.weight.grad.numpy(), **TOLERANCE
    )
