"""``ConvTranspose`` against PyTorch in float64 (1e-10), forward and gradients.

funcnn's transposed kernel is Flax's, not flipped: PyTorch's weight is funcnn's kernel flipped in
space with in/out channels swapped within each group (``_torch_weight``). Asymmetric and ``"SAME"``
paddings are PyTorch's ``padding=0`` output cropped by ``(lo, hi)``; ``output_shape`` is
``nn.ConvTranspose*d(..., output_size=...)``; padding modes, which PyTorch's transposed
convolutions refuse, are PyTorch's own transpose (autograd) of ``conv(F.pad(x, mode))``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from funcnn.layers.conv import ConvTranspose

torch = pytest.importorskip("torch")
F = torch.nn.functional

pytestmark = [pytest.mark.usefixtures("x64"), pytest.mark.slow]  # PyTorch agreement: in `make test-slow`

TOLERANCE = 1e-10
# Small float64 programs: LLVM optimisation is most of their compile time and changes no arithmetic.
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
TORCH_MODES = {"reflect": "reflect", "replicate": "replicate", "circular": "circular"}


def _random(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape)


def _torch_weight(kernel, groups):
    """funcnn's ``(*k, C_in / G, C_out)`` transposed kernel as PyTorch's ``(C_in, C_out / G, *k)``, flipped."""
    kernel = np.asarray(kernel)
    *k, group_in, c_out = kernel.shape
    rank = len(k)
    w = kernel.reshape(*k, group_in, groups, c_out // groups)
    w = w.transpose(rank + 1, rank, rank + 2, *range(rank)).reshape(groups * group_in, c_out // groups, *k)
    return np.flip(w, tuple(range(2, 2 + rank))).copy()


def _channels_first(a):
    return torch.tensor(np.moveaxis(np.asarray(a), -1, 1).copy(), dtype=torch.float64, requires_grad=True)


def _channels_last(t):
    return np.moveaxis(t.detach().numpy(), 1, -1)


def _funcnn(layer, kernel, bias, x, g):
    """Output and ``(d kernel, d bias, d x)`` of the layer for the cotangent ``g``, one compiled program."""

    def run(kernel, bias, x, g):
        y, vjp = jax.vjp(lambda p, x: layer.apply(p, (), x)[0], {"kernel": kernel, "bias": bias}, x)
        dp, dx = vjp(g)
        return y, dp["kernel"], dp["bias"], dx

    args = tuple(jnp.asarray(a) for a in (kernel, bias, x, g))
    return jax.jit(run).lower(*args).compile(FAST_COMPILE)(*args)


def _init(layer, input_shape):
    """init's output shape and parameter shapes, traced (nothing compiled)."""
    found = []

    def run(key):
        shape, params, _ = layer.init(key, input_shape)
        found.append(shape)
        return params

    params = jax.eval_shape(run, jax.random.key(0))
    return found[0], {name: p.shape for name, p in params.items()}


def _compare(layer, spatial, c_in, groups, torch_forward, seed=0):
    """Run the layer and ``torch_forward(x, weight, bias)`` (channels first) on the same numbers."""
    out_shape, shapes = _init(layer, (-1, *spatial, c_in))
    kernel, bias = _random(shapes["kernel"], seed + 1), _random(shapes["bias"], seed + 2)
    x = _random((2, *spatial, c_in), seed + 3)
    g = _random((2, *out_shape[1:]), seed + 4)
    y, dkernel, dbias, dx = _funcnn(layer, kernel, bias, x, g)

    tx = _channels_first(x)
    tw = torch.tensor(_torch_weight(kernel, groups), requires_grad=True)
    tb = torch.tensor(bias, requires_grad=True)
    ty = torch_forward(tx, tw, tb)
    ty.backward(torch.tensor(np.moveaxis(g, -1, 1).copy()))

    assert y.shape == (2, *out_shape[1:])
    np.testing.assert_allclose(y, _channels_last(ty), rtol=TOLERANCE, atol=TOLERANCE)
    np.testing.assert_allclose(dx, _channels_last(tx.grad), rtol=TOLERANCE, atol=TOLERANCE)
    np.testing.assert_allclose(
        _torch_weight(dkernel, groups), tw.grad.numpy(), rtol=TOLERANCE, atol=TOLERANCE
    )
    np.testing.assert_allclose(dbias, tb.grad.numpy(), rtol=TOLERANCE, atol=TOLERANCE)


def _conv_transpose(rank):
    return {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[rank]


def _conv(rank):
    return {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[rank]


def _crop(t, pads):
    """Remove ``(lo, hi)`` rows from each spatial axis of a channels-first tensor."""
    index = (slice(None), slice(None)) + tuple(
        slice(lo, t.shape[2 + i] - hi) for i, (lo, hi) in enumerate(pads)
    )
    return t[index]


@pytest.mark.parametrize(
    "spatial, ksize, strides, padding, dilation, output_padding, groups",
    [
        ((6,), (3,), 2, 1, 1, 1, 1),
        ((5,), (4,), 3, 2, 2, 2, 2),
        ((4, 5), (3, 3), 2, 1, 1, 1, 1),
        ((4, 5), (3, 2), (2, 3), (1, 0), (1, 2), (1, 2), 2),
        ((3, 4), (2, 3), 1, 0, 3, 2, 1),
        ((3, 4, 3), (3, 2, 2), (2, 1, 2), (1, 0, 1), 1, (1, 0, 0), 2),
    ],
)
def test_conv_transpose_equals_torch(spatial, ksize, strides, padding, dilation, output_padding, groups):
    rank = len(spatial)
    pads = tuple((p, p) for p in ((padding,) * rank if isinstance(padding, int) else padding))
    layer = ConvTranspose(4, ksize, strides, pads, dilation, groups, output_padding=output_padding)

    def forward(x, w, b):
        return _conv_transpose(rank)(
            x,
            w,
            b,
            stride=strides,
            padding=padding,
            output_padding=output_padding,
            groups=groups,
            dilation=dilation,
        )

    _compare(layer, spatial, 2, groups, forward)


@pytest.mark.parametrize(
    "spatial, ksize, strides, padding, dilation, output_padding, groups",
    [
        ((5,), (3,), 2, ((2, 0),), 1, 1, 1),
        ((4, 5), (3, 4), (2, 3), ((0, 2), (1, 3)), (1, 1), (1, 2), 2),
        ((4, 3), (2, 3), (3, 2), "SAME", (1, 2), (2, 1), 1),
        ((4, 3), (4, 1), 2, "SAME", 1, 0, 2),
        ((3, 3, 2), (3, 2, 2), (2, 3, 2), "SAME", 1, (1, 2, 0), 2),
    ],
)
def test_asymmetric_and_same_padding_equal_torch_cropped(
    spatial, ksize, strides, padding, dilation, output_padding, groups
):
    """PyTorch pads symmetrically: its ``padding=0`` output with ``output_padding=r``, cropped by
    ``(lo, hi)``. For ``"SAME"`` with output padding ``p`` the output is ``L = n s - p`` and
    ``(lo, hi)`` the SAME padding of a length-``L`` forward input, written out here."""
    rank = len(spatial)
    s, d, p = ((v,) * rank if isinstance(v, int) else v for v in (strides, dilation, output_padding))
    spans = tuple(di * (f - 1) + 1 for f, di in zip(ksize, d, strict=True))
    if padding == "SAME":
        lengths = tuple(n * si - pi for n, si, pi in zip(spatial, s, p, strict=True))
        totals = tuple(
            max((n - 1) * si + k - m, 0) for n, si, k, m in zip(spatial, s, spans, lengths, strict=True)
        )
        pads = tuple((t // 2, t - t // 2) for t in totals)
    else:
        pads = padding
        lengths = tuple(
            (n - 1) * si + k - lo - hi + pi
            for n, si, k, (lo, hi), pi in zip(spatial, s, spans, pads, p, strict=True)
        )
    unreached = tuple(
        m + lo + hi - k - (n - 1) * si
        for m, (lo, hi), k, n, si in zip(lengths, pads, spans, spatial, s, strict=True)
    )
    layer = ConvTranspose(4, ksize, strides, padding, dilation, groups, output_padding=output_padding)

    def forward(x, w, b):
        full = _conv_transpose(rank)(x, w, b, stride=s, output_padding=unreached, groups=groups, dilation=d)
        return _crop(full, pads)

    _compare(layer, spatial, 2, groups, forward)


@pytest.mark.parametrize(
    "spatial, ksize, strides, padding, target",
    [
        ((4, 5), (3, 3), 2, 1, (7, 10)),
        ((4, 5), (3, 2), (3, 2), 0, (13, 11)),
        ((3, 4), (2, 3), (3, 2), (1, 0), (6, 10)),
    ],
)
def test_output_shape_equals_torch_output_size(spatial, ksize, strides, padding, target):
    """``nn.ConvTranspose2d.forward(x, output_size=target)``: PyTorch picks the output padding."""
    module = torch.nn.ConvTranspose2d(2, 4, ksize, strides, padding, dtype=torch.float64)
    layer = ConvTranspose(4, ksize, strides, padding, output_shape=target)

    def forward(x, w, b):
        params = {"weight": w, "bias": b}
        return torch.func.functional_call(module, params, (x,), {"output_size": target})

    assert _init(layer, (-1, *spatial, 2))[0][1:-1] == target
    _compare(layer, spatial, 2, 1, forward)


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
@pytest.mark.parametrize(
    "spatial, ksize, strides, padding, dilation, output_padding, groups",
    [
        ((5,), (3,), 2, "SAME", 1, 1, 1),
        ((5,), (4,), 3, ((2, 1),), 1, 2, 2),
        ((4, 5), (3, 2), (2, 1), ((1, 2), (0, 1)), (1, 2), (1, 0), 2),
        ((3, 4), (3, 3), 2, "SAME", 1, 0, 1),
        ((3, 3, 3), (2, 3, 2), (2, 1, 2), ((1, 0), (1, 1), (0, 1)), 1, (1, 0, 0), 1),
    ],
)
def test_padding_modes_equal_torch_transpose_of_padded_conv(
    mode, spatial, ksize, strides, padding, dilation, output_padding, groups
):
    """PyTorch's transposed convolutions have only zero padding; its autograd transposes
    ``conv(F.pad(x, mode))``, which is what ``padding_mode`` means here."""
    rank = len(spatial)
    layer = ConvTranspose(
        4, ksize, strides, padding, dilation, groups, output_padding=output_padding, padding_mode=mode
    )
    out_shape = _init(layer, (-1, *spatial, 2))[0]
    s = (strides,) * rank if isinstance(strides, int) else strides
    d = (dilation,) * rank if isinstance(dilation, int) else dilation
    if padding == "SAME":  # the SAME padding of the forward convolution's length-L input
        spans = tuple(di * (f - 1) + 1 for f, di in zip(ksize, d, strict=True))
        totals = tuple(
            max((n - 1) * si + k - m, 0) for n, si, k, m in zip(spatial, s, spans, out_shape[1:-1])
        )
        padding = tuple((t // 2, t - t // 2) for t in totals)
    torch_pad = tuple(v for lo_hi in reversed(padding) for v in lo_hi)

    def forward(x, w, b):
        zeros = torch.zeros(
            (x.shape[0], out_shape[-1], *out_shape[1:-1]), dtype=torch.float64, requires_grad=True
        )
        z = _conv(rank)(
            F.pad(zeros, torch_pad, mode=TORCH_MODES[mode]), w, stride=s, dilation=d, groups=groups
        )
        assert z.shape == x.shape
        (back,) = torch.autograd.grad(z, zeros, grad_outputs=x, create_graph=True)
        return back + b.reshape(1, -1, *(1,) * rank)

    _compare(layer, spatial, 2, groups, forward)
