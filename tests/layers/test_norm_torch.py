"""The normalisation layers against PyTorch in float64: outputs and gradients (``x``, ``scale``, ``bias``) to
1e-10, for both ``grad`` paths. funcnn is channels-last, PyTorch channels-first: inputs are permuted."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from funcnn.layers.norm import GroupNorm, InstanceNorm, LayerNorm, RMSNorm  # noqa: E402

pytestmark = [pytest.mark.usefixtures("x64"), pytest.mark.slow]  # PyTorch agreement: in `make test-slow`

TOLERANCE = 1e-10
GRADS = ["custom", "autodiff"]


def _channels_first(a):
    """NHWC -> NCHW (any rank)."""
    return np.moveaxis(a, -1, 1)


def _channels_last(a):
    return np.moveaxis(a, 1, -1)


def _data(shape, param_shape, seed=0):
    rng = np.random.default_rng(seed)
    x = 1.5 + 2.0 * rng.normal(size=shape)
    params = {"scale": 1.0 + 0.5 * rng.normal(size=param_shape), "bias": 0.5 * rng.normal(size=param_shape)}
    return x, params, rng.normal(size=shape)


def _funcnn(layer, x, params, cotangent):
    """funcnn's output and the gradients of ``sum(y * cotangent)`` with respect to ``x`` and the params."""
    params = {k: jnp.asarray(v) for k, v in params.items()}

    def loss(p, x):
        y, _ = layer.apply(p, (), x)
        return jnp.sum(y * cotangent), y

    (_, y), (dp, dx) = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(params, jnp.asarray(x))
    return np.asarray(y), np.asarray(dx), {k: np.asarray(v) for k, v in dp.items()}


def _torch(module, x, cotangent, to_torch, from_torch):
    """PyTorch's output and gradients, in funcnn's layout (``to_torch``/``from_torch`` map arrays)."""
    xt = torch.tensor(to_torch(x), requires_grad=True)
    y = module(xt)
    (y * torch.tensor(to_torch(cotangent))).sum().backward()
    return from_torch(y.detach().numpy()), from_torch(xt.grad.numpy())


def _close(got, want):
    np.testing.assert_allclose(got, want, rtol=TOLERANCE, atol=TOLERANCE)


# LayerNorm over the trailing axes of the channels-first layout: torch's normalized_shape is
# those axes' sizes in NC... order; funcnn's axes are the same axes of its NHWC input.
LAYERNORM_CASES = [
    # (NHWC shape, funcnn axis, torch permutation of the funcnn input, torch normalized_shape axes)
    ((3, 7), -1, (0, 1), 1),
    ((2, 5, 4), -1, (0, 1, 2), 1),
    ((2, 5, 4), (1, 2), (0, 1, 2), 2),
    ((2, 5, 4, 3), (1, 2, 3), (0, 3, 1, 2), 3),  # nn.LayerNorm((C, H, W)) on NCHW
    ((2, 5, 4, 3), (2, 3), (0, 1, 2, 3), 2),  # nn.LayerNorm((W, C)) on NHWC
    ((2, 4, 3, 2, 3), (1, 2, 3, 4), (0, 4, 1, 2, 3), 4),  # nn.LayerNorm((C, D, H, W)) on NCDHW
]


@pytest.mark.parametrize("grad", GRADS)
@pytest.mark.parametrize("shape, axis, permutation, trailing", LAYERNORM_CASES)
def test_layernorm_equals_torch(shape, axis, permutation, trailing, grad):
    layer = LayerNorm(axis=axis, epsilon=1e-3, grad=grad)
    _, params, _ = layer.init(jax.random.key(0), shape)
    param_shape = params["scale"].shape
    x, params, cotangent = _data(shape, param_shape)
    y, dx, dp = _funcnn(layer, x, params, cotangent)

    inverse = np.argsort(permutation)
    torch_shape = tuple(shape[a] for a in permutation)
    module = torch.nn.LayerNorm(torch_shape[-trailing:], eps=1e-3, dtype=torch.float64)
    # funcnn's params are x's sizes along its axes in increasing order; torch's the trailing axes of
    # the permuted layout, in that layout's order.
    funcnn_axes = sorted(a % len(shape) for a in (axis if isinstance(axis, tuple) else (axis,)))
    order = np.argsort([list(permutation).index(a) for a in funcnn_axes])
    with torch.no_grad():
        module.weight.copy_(torch.tensor(np.transpose(params["scale"], order)))
        module.bias.copy_(torch.tensor(np.transpose(params["bias"], order)))
    want_y, want_dx = _torch(
        module, x, cotangent, lambda a: np.transpose(a, permutation), lambda a: np.transpose(a, inverse)
    )
    back = np.argsort(order)
    _close(y, want_y)
    _close(dx, want_dx)
    _close(dp["scale"], np.transpose(module.weight.grad.numpy(), back))
    _close(dp["bias"], np.transpose(module.bias.grad.numpy(), back))


@pytest.mark.parametrize("grad", GRADS)
@pytest.mark.parametrize(
    "shape, axis, trailing",
    [((3, 7), -1, 1), ((2, 5, 4, 3), -1, 1), ((2, 5, 4, 3), (1, 2, 3), 3), ((2, 5, 4, 3), (2, 3), 2)],
)
def test_rmsnorm_equals_torch_with_an_explicit_eps(shape, axis, trailing, grad):
    """torch.nn.RMSNorm normalises over the trailing ``normalized_shape``; funcnn's params are x's sizes there."""
    layer = RMSNorm(axis=axis, epsilon=1e-4, grad=grad)
    _, params, _ = layer.init(jax.random.key(0), shape)
    x, params, cotangent = _data(shape, params["scale"].shape)
    params = {"scale": params["scale"]}
    y, dx, dp = _funcnn(layer, x, params, cotangent)
    module = torch.nn.RMSNorm(shape[-trailing:], eps=1e-4, dtype=torch.float64)
    with torch.no_grad():
        module.weight.copy_(torch.tensor(params["scale"]))
    want_y, want_dx = _torch(module, x, cotangent, lambda a: a, lambda a: a)
    _close(y, want_y)
    _close(dx, want_dx)
    _close(dp["scale"], module.weight.grad.numpy())


def test_rmsnorm_with_torch_default_eps_matches_when_given_machine_epsilon():
    """torch.nn.RMSNorm(eps=None) adds torch.finfo(dtype).eps; funcnn needs it spelt out."""
    shape = (2, 6)
    x, params, cotangent = _data(shape, (6,))
    layer = RMSNorm(epsilon=float(np.finfo(np.float64).eps))
    y, _, _ = _funcnn(layer, x, {"scale": params["scale"]}, cotangent)
    module = torch.nn.RMSNorm(6, dtype=torch.float64)
    with torch.no_grad():
        module.weight.copy_(torch.tensor(params["scale"]))
    _close(y, module(torch.tensor(x)).detach().numpy())


INSTANCE = {1: (2, 9, 3), 2: (2, 5, 4, 3), 3: (2, 4, 3, 5, 2)}
TORCH_INSTANCE = {1: "InstanceNorm1d", 2: "InstanceNorm2d", 3: "InstanceNorm3d"}


@pytest.mark.parametrize("grad", GRADS)
@pytest.mark.parametrize("rank", [1, 2, 3])
def test_instancenorm_equals_torch_affine_without_running_stats(rank, grad):
    shape = INSTANCE[rank]
    channels = shape[-1]
    layer = InstanceNorm(epsilon=1e-3, grad=grad)
    x, params, cotangent = _data(shape, (channels,))
    y, dx, dp = _funcnn(layer, x, params, cotangent)
    module = getattr(torch.nn, TORCH_INSTANCE[rank])(
        channels, eps=1e-3, affine=True, track_running_stats=False, dtype=torch.float64
    )
    with torch.no_grad():
        module.weight.copy_(torch.tensor(params["scale"]))
        module.bias.copy_(torch.tensor(params["bias"]))
    want_y, want_dx = _torch(module, x, cotangent, _channels_first, _channels_last)
    _close(y, want_y)
    _close(dx, want_dx)
    _close(dp["scale"], module.weight.grad.numpy())
    _close(dp["bias"], module.bias.grad.numpy())


@pytest.mark.parametrize("grad", GRADS)
@pytest.mark.parametrize("shape, groups", [((2, 5, 4, 6), 3), ((2, 7, 4), 2), ((3, 8), 4)])
def test_groupnorm_equals_torch(shape, groups, grad):
    channels = shape[-1]
    layer = GroupNorm(groups, epsilon=1e-3, grad=grad)
    x, params, cotangent = _data(shape, (channels,))
    y, dx, dp = _funcnn(layer, x, params, cotangent)
    module = torch.nn.GroupNorm(groups, channels, eps=1e-3, dtype=torch.float64)
    with torch.no_grad():
        module.weight.copy_(torch.tensor(params["scale"]))
        module.bias.copy_(torch.tensor(params["bias"]))
    want_y, want_dx = _torch(module, x, cotangent, _channels_first, _channels_last)
    _close(y, want_y)
    _close(dx, want_dx)
    _close(dp["scale"], module.weight.grad.numpy())
    _close(dp["bias"], module.bias.grad.numpy())
