"""The resize ops and layers against ``torch.nn.functional.interpolate(..., align_corners=False)`` in
float64, forward and gradients (funcnn is channels-last, torch channels-first)."""

import pytest

torch = pytest.importorskip("torch")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import torch.nn.functional as F  # noqa: E402, N812

from funcnn.layers.resize import Resize, Upsample  # noqa: E402
from funcnn.ops.resize import resize, upsample  # noqa: E402

pytestmark = [pytest.mark.usefixtures("x64"), pytest.mark.slow]  # PyTorch agreement: in `make test-slow`

TOLERANCE = 1e-10
LINEAR = {1: "linear", 2: "bilinear", 3: "trilinear"}

# Up- and downsampling, sizes that divide and that do not, an unchanged axis, sizes 1.
SIZES = {
    1: [((7,), (14,)), ((7,), (17,)), ((9,), (3,)), ((9,), (4,)), ((1,), (4,)), ((5,), (1,)), ((4,), (13,))],
    2: [((5, 6), (10, 18)), ((5, 7), (8, 4)), ((8, 6), (4, 6)), ((6, 9), (7, 2)), ((3, 3), (11, 1))],
    3: [((2, 3, 4), (4, 6, 2)), ((3, 4, 5), (6, 3, 7)), ((4, 2, 3), (1, 5, 3))],
}
CASES = [(spatial, out) for rank in SIZES for spatial, out in SIZES[rank]]


def _data(spatial, out, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(2, *spatial, 3)), rng.normal(size=(2, *out, 3))


def _torch(x, g, **kwargs):
    """``interpolate`` of channels-last ``x`` and its gradient for the cotangent ``g``, channels-last."""
    xt = torch.tensor(np.moveaxis(x, -1, 1), requires_grad=True)
    yt = F.interpolate(xt, **kwargs)
    yt.backward(torch.tensor(np.moveaxis(g, -1, 1)))
    return np.moveaxis(yt.detach().numpy(), 1, -1), np.moveaxis(xt.grad.numpy(), 1, -1)


def _ours(f, x, g):
    y, vjp = jax.vjp(f, jnp.asarray(x))
    return np.asarray(y), np.asarray(vjp(jnp.asarray(g))[0])


def _assert_agree(ours, theirs):
    for got, want in zip(ours, theirs, strict=True):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=TOLERANCE, atol=TOLERANCE)


@pytest.mark.parametrize("method", ["nearest", "nearest-exact", "linear"])
@pytest.mark.parametrize("spatial, out", CASES)
def test_resize_equals_interpolate_to_a_size(spatial, out, method):
    x, g = _data(spatial, out)
    kwargs = {"align_corners": False} if method == "linear" else {}
    mode = LINEAR[len(spatial)] if method == "linear" else method
    theirs = _torch(x, g, size=out, mode=mode, **kwargs)
    _assert_agree(_ours(lambda x: resize(x, out, method), x, g), theirs)


@pytest.mark.parametrize("spatial, out", SIZES[2])
def test_bicubic_equals_interpolate_bicubic(spatial, out):
    x, g = _data(spatial, out)
    theirs = _torch(x, g, size=out, mode="bicubic", align_corners=False)
    _assert_agree(_ours(lambda x: resize(x, out, "bicubic"), x, g), theirs)


def test_bicubic_in_1d_and_3d_is_pytorchs_2d_kernel_along_each_axis():
    """PyTorch has bicubic for 2 spatial axes only; an axis of size 1 kept at 1 is the identity."""
    x, g = _data((6,), (13,))
    x2, g2 = x[:, None], g[:, None]  # (N, 1, W, C)
    y, dx = _torch(x2, g2, size=(1, 13), mode="bicubic", align_corners=False)
    _assert_agree(_ours(lambda x: resize(x, 13, "bicubic"), x, g), (y[:, 0], dx[:, 0]))

    # 3-D: (D, H, W) -> (D', H', W') is 2-D bicubic on (H, W) per depth slice, then on (D, 1).
    x, g = _data((4, 5, 3), (7, 2, 6))
    xt = torch.tensor(np.moveaxis(x, -1, 1), requires_grad=True)  # (N, C, D, H, W)
    n, c, d = xt.shape[:3]
    hw = F.interpolate(xt.reshape(n, c * d, 5, 3), size=(2, 6), mode="bicubic", align_corners=False)
    hw = hw.reshape(n, c, d, 2 * 6)
    yt = F.interpolate(hw, size=(7, 12), mode="bicubic", align_corners=False).reshape(n, c, 7, 2, 6)
    yt.backward(torch.tensor(np.moveaxis(g, -1, 1)))
    theirs = np.moveaxis(yt.detach().numpy(), 1, -1), np.moveaxis(xt.grad.numpy(), 1, -1)
    _assert_agree(_ours(lambda x: resize(x, (7, 2, 6), "bicubic"), x, g), theirs)


@pytest.mark.parametrize(
    "rank, scale, method",
    [
        (rank, scale, method)
        for rank, scale in [(1, 3), (2, 2), (2, (3, 1)), (3, 2)]
        for method in ["nearest", "linear", "bicubic"]
        if method != "bicubic" or rank == 2  # PyTorch has bicubic for 2 spatial axes only
    ],
)
def test_upsample_equals_interpolate_by_a_scale_factor(rank, scale, method):
    spatial = (4, 5, 3)[:rank]
    factors = scale if isinstance(scale, tuple) else (scale,) * rank
    x, g = _data(spatial, tuple(n * s for n, s in zip(spatial, factors)))
    kwargs = {} if method == "nearest" else {"align_corners": False}
    mode = LINEAR[rank] if method == "linear" else method
    theirs = _torch(x, g, scale_factor=factors, mode=mode, **kwargs)
    _assert_agree(_ours(lambda x: upsample(x, scale, method), x, g), theirs)


@pytest.mark.parametrize("method", ["nearest", "nearest-exact"])
@pytest.mark.parametrize("n, m", [(14, 92), (37, 201), (26, 11)])
def test_nearest_gradient_is_the_transpose_of_pytorchs_forward(n, m, method):
    """At these sizes PyTorch's nearest backward computes its index in float32 even for float64
    tensors, and sends some outputs' gradients to a neighbour of the input its forward read (14 -> 92:
    output 46 reads input 7, its gradient goes to 6). The forward agrees; the gradient here is the
    exact transpose of that forward: each input gets the sum of the outputs that copy it."""
    x, g = _data((n,), (m,))
    positions = torch.arange(n, dtype=torch.float64).reshape(1, 1, n)
    read = F.interpolate(positions, size=m, mode=method)[0, 0].numpy().astype(int)
    expected_dx = np.zeros_like(x)
    np.add.at(expected_dx, (slice(None), read), g)
    y, dx = _ours(lambda x: resize(x, m, method), x, g)
    np.testing.assert_array_equal(y, x[:, read])
    np.testing.assert_array_equal(y, _torch(x, g, size=m, mode=method)[0])
    np.testing.assert_allclose(dx, expected_dx, rtol=1e-15)


@pytest.mark.parametrize(
    "layer, module",
    [
        (Upsample(2), lambda: torch.nn.Upsample(scale_factor=2)),
        (Upsample(2, "bilinear"), lambda: torch.nn.Upsample(scale_factor=2, mode="bilinear")),
        (Resize((9, 4), "bicubic"), lambda: torch.nn.Upsample(size=(9, 4), mode="bicubic")),
    ],
)
def test_layers_equal_torch_upsample_modules(layer, module):
    x = np.random.default_rng(0).normal(size=(2, 5, 6, 3))
    out_shape, params, state = layer.init(jax.random.key(0), x.shape)
    g = np.random.default_rng(1).normal(size=out_shape)
    ours = _ours(lambda x: layer.apply(params, state, x)[0], x, g)
    xt = torch.tensor(np.moveaxis(x, -1, 1), requires_grad=True)
    yt = module()(xt)
    yt.backward(torch.tensor(np.moveaxis(g, -1, 1)))
    _assert_agree(ours, (np.moveaxis(yt.detach().numpy(), 1, -1), np.moveaxis(xt.grad.numpy(), 1, -1)))
