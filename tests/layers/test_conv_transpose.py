"""``ConvTranspose``: padding modes as the transpose of ``Conv``'s (Equinox's and Flax's circular
definitions written out), ``"SAME"`` with ``output_padding`` mapping back to ``n``, ``output_shape``
targets, shape agreement and the new errors."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from funcnn.core import LayerConfigError
from funcnn.layers.conv import Conv, ConvTranspose
from funcnn.shapes import dilated_size
from funcnn.testing import check_vjp

pytestmark = pytest.mark.usefixtures("x64")

KEY = jax.random.key(0)
MODES = ("zeros", "reflect", "replicate", "circular")
# Small float64 programs: LLVM optimisation is most of their compile time and changes no arithmetic.
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def _random(shape, seed):
    """Normal samples drawn by NumPy: no per-shape XLA compilation, unlike ``jax.random``."""
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float64)


def _compiled(f, *args):
    """``f(*args)`` as one compiled program (one compilation, not one per primitive)."""
    return jax.jit(f).lower(*args).compile(FAST_COMPILE)(*args)


def _traced(layer, input_shape, batch=2):
    """stax's shape agreement without compiling anything: ``init`` (batch ``-1``) and ``apply``
    (batch ``batch``) both traced by ``jax.eval_shape``; returns init's output shape and the
    parameter shapes, after checking that apply's output has init's shape."""
    found = []

    def run(key):
        shape, params, state = layer.init(key, (-1, *input_shape[1:]))
        found.append(shape)
        return layer.apply(params, state, jnp.zeros((batch, *input_shape[1:])))[0], params

    y, params = jax.eval_shape(run, KEY)
    (shape,) = found
    assert shape[0] == -1 and y.shape == (batch, *shape[1:]), (shape, y.shape)
    return shape, jax.tree.map(lambda p: p.shape, params)


def _dimension_numbers(rank):
    s = {1: "W", 2: "HW", 3: "DHW"}[rank]
    return f"N{s}C", f"{s}IO", f"N{s}C"


def _forward_kernel(kernel, groups):
    """The kernel of the ``Conv`` a transposed kernel transposes: flipped, in/out swapped per group."""
    *spatial, group_in, c_out = kernel.shape
    rank = len(spatial)
    swapped = kernel.reshape(*spatial, group_in, groups, c_out // groups)
    swapped = swapped.transpose(*range(rank), rank + 2, rank + 1, rank)
    swapped = swapped.reshape(*spatial, c_out // groups, groups * group_in)
    return jnp.flip(swapped, tuple(range(rank)))


def _transpose_of_conv(mode, kernel, bias, u, out_shape, *, strides, padding, dilation, groups):
    """The definition: the linear transpose of ``Conv(padding_mode=mode)`` (``jnp.pad``, then a
    VALID convolution) with the flipped, swapped kernel, applied to ``u``, plus the bias."""
    conv = Conv(
        u.shape[-1], kernel.shape[:-2], strides, padding, dilation, groups,
        use_bias=False, padding_mode=mode, grad="autodiff",
    )  # fmt: skip
    forward_params = {"kernel": _forward_kernel(kernel, groups)}
    x = jnp.zeros((u.shape[0], *out_shape[1:]), u.dtype)
    assert jax.eval_shape(lambda x: conv.apply(forward_params, (), x)[0], x).shape == u.shape
    (back,) = jax.linear_transpose(lambda x: conv.apply(forward_params, (), x)[0], x)(u)
    return back + jnp.broadcast_to(bias, back.shape)


# --- padding modes -----------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "spatial, ksize, strides, padding, dilation, output_padding, groups",
    [
        ((5,), (4,), 2, ((2, 1),), 1, 1, 2),
        ((4, 5), (3, 3), 2, "SAME", 1, (1, 0), 1),
        ((4, 5), (3, 2), (2, 3), 1, (1, 2), (1, 2), 2),
        ((5, 4), (2, 3), 3, ((0, 2), (1, 1)), 1, 2, 1),
        ((3, 4, 3), (3, 2, 2), (2, 1, 2), "SAME", 1, 0, 2),
        ((4, 4), (3, 3), 1, "VALID", 2, 0, 1),
    ],
)
def test_padding_mode_is_the_transpose_of_conv_with_that_padding_mode(
    mode, spatial, ksize, strides, padding, dilation, output_padding, groups
):
    layer = ConvTranspose(
        4, ksize, strides, padding, dilation, groups, output_padding=output_padding, padding_mode=mode
    )
    out_shape, param_shapes = _traced(layer, (-1, *spatial, 2))
    kernel, bias, u = _random(param_shapes["kernel"], 1), _random((4,), 2), _random((2, *spatial, 2), 3)

    def both(kernel, bias, u):
        expected = _transpose_of_conv(
            mode,
            kernel,
            bias,
            u,
            out_shape,
            strides=strides,
            padding=padding,
            dilation=dilation,
            groups=groups,
        )
        return layer.apply({"kernel": kernel, "bias": bias}, (), u)[0], expected

    y, expected = _compiled(both, kernel, bias, u)
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


def _equinox_circular(u, kernel, strides, dilation, groups):
    """Equinox's ``ConvTranspose(padding="SAME", padding_mode="CIRCULAR")`` (``_padding_transpose``
    then ``_circular_pad``), channels last: wrap ``u`` by ``pad_t // s`` rows, then the
    input-dilated convolution padded by ``pad_t % s``."""
    k = np.asarray(kernel.shape[:-2])
    s, d = np.asarray(strides), np.asarray(dilation)
    p_sum = d * (k - 1) - s + 1
    a = np.where(p_sum < 0, -p_sum, 0)
    p_sum = np.where(p_sum < 0, 0, p_sum)
    p0 = p_sum // 2
    p1 = p_sum - p0
    pad_t = np.stack([d * (k - 1) - p0, d * (k - 1) - p1 + a], axis=1)
    wrap = [(0, 0)] + [tuple(int(v) for v in row) for row in pad_t // s[:, None]] + [(0, 0)]
    u = jnp.pad(u, wrap, mode="wrap")
    return lax.conv_general_dilated(
        u,
        kernel,
        window_strides=(1,) * len(k),
        padding=[tuple(int(v) for v in row) for row in pad_t % s[:, None]],
        lhs_dilation=tuple(int(v) for v in s),
        rhs_dilation=tuple(int(v) for v in d),
        dimension_numbers=_dimension_numbers(len(k)),
        feature_group_count=groups,
    )


def _flax_circular(u, kernel, strides, dilation):
    """Flax's ``ConvTranspose(padding="CIRCULAR", transpose_kernel=False)``: a VALID
    ``lax.conv_transpose``, zero-padded to whole periods ``n s`` (the odd row on the left),
    then summed period by period."""
    y = lax.conv_transpose(u, kernel, strides, "VALID", rhs_dilation=dilation)
    periods = [n * s for n, s in zip(u.shape[1:-1], strides, strict=True)]
    diffs = [-(m - p) % (2 * p) for m, p in zip(y.shape[1:-1], periods, strict=True)]
    y = jnp.pad(y, [(0, 0)] + [((diff + 1) // 2, diff // 2) for diff in diffs] + [(0, 0)])
    for axis in range(1, y.ndim - 1):
        y = y.reshape(*y.shape[:axis], -1, periods[axis - 1], *y.shape[axis + 1 :]).sum(axis=axis)
    return y


@pytest.mark.parametrize(
    "spatial, ksize, strides, dilation, groups",
    [
        ((4,), (5,), (2,), (1,), 2),
        ((4, 3), (3, 4), (2, 3), (1, 1), 1),
        ((3, 4), (2, 3), (3, 1), (2, 2), 2),
        ((2, 3, 2), (3, 2, 3), (2, 2, 1), (1, 1, 2), 1),
    ],
)
def test_same_circular_is_equinox_and_flax_circular_conv_transpose(spatial, ksize, strides, dilation, groups):
    layer = ConvTranspose(
        4, ksize, strides, "SAME", dilation, groups, use_bias=False, padding_mode="circular"
    )
    out_shape, param_shapes = _traced(layer, (-1, *spatial, 2))
    assert out_shape[1:-1] == tuple(n * s for n, s in zip(spatial, strides, strict=True))
    kernel, u = _random(param_shapes["kernel"], 4), _random((2, *spatial, 2), 5)

    def all_three(kernel, u):
        flax = _flax_circular(u, kernel, strides, dilation) if groups == 1 else None  # Flax has no groups
        return (
            layer.apply({"kernel": kernel}, (), u)[0],
            _equinox_circular(u, kernel, strides, dilation, groups),
            flax,
        )

    y, equinox, flax = _compiled(all_three, kernel, u)
    np.testing.assert_allclose(y, equinox, rtol=1e-12, atol=1e-12)
    if flax is not None:
        np.testing.assert_allclose(y, flax, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode", ["reflect", "circular"])
def test_padding_mode_gradients_custom_rule_equals_autodiff(mode):
    def layer(grad):
        return ConvTranspose(
            4, (3, 2), 2, ((1, 2), (1, 0)), groups=2, output_padding=1, padding_mode=mode, grad=grad
        )

    _, param_shapes = _traced(layer("custom"), (-1, 4, 5, 2))
    params = {name: _random(shape, 6) for name, shape in param_shapes.items()}
    check_vjp(
        jax.jit(lambda p, x: layer("custom").apply(p, (), x)[0]),
        params,
        _random((2, 4, 5, 2), 7),
        reference=jax.jit(lambda p, x: layer("autodiff").apply(p, (), x)[0]),
        rtol=1e-12,
        atol=1e-12,
    )


def test_replicate_folds_the_border_rows_onto_the_edges():
    """Ones in, a ones kernel of size 3: zero padding drops one tap at each edge, ``replicate``
    adds the border row (one tap) back onto the edge row, so every output counts 3."""
    u = jnp.ones((1, 6, 1), jnp.float64)
    kernel = jnp.ones((3, 1, 1), jnp.float64)
    zeros = ConvTranspose(1, 3, padding="SAME", use_bias=False)
    replicate = ConvTranspose(1, 3, padding="SAME", use_bias=False, padding_mode="replicate")
    y0, _ = zeros.apply({"kernel": kernel}, (), u)
    y1, _ = replicate.apply({"kernel": kernel}, (), u)
    np.testing.assert_array_equal(y0[0, :, 0], [2, 3, 3, 3, 3, 2])
    np.testing.assert_array_equal(y1[0, :, 0], [3, 3, 3, 3, 3, 3])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("rank", [1, 2, 3])
def test_padding_mode_shape_agreement(mode, rank):
    layer = ConvTranspose(4, 3, 2, "SAME", groups=2, output_padding=1, padding_mode=mode)
    assert _traced(layer, (-1, *(4,) * rank, 2))[0] == (-1, *(7,) * rank, 4)


# --- "SAME" with output_padding ----------------------------------------------------


@pytest.mark.parametrize("s, k, d", list(itertools.product([1, 2, 3], [1, 2, 3, 4], [1, 2])))
def test_same_with_output_padding_maps_back_to_n_under_the_same_conv(s, k, d):
    """The finding of issue 18: every ``output_padding`` ``p < s`` gives a length ``n s - p``
    that ``Conv(padding="SAME")`` of stride ``s`` maps back to ``n``; init's shape is apply's."""
    for n, p in itertools.product(range(1, 6), range(s)):
        out, _ = _traced(ConvTranspose(2, k, s, "SAME", d, output_padding=p), (-1, n, 3))
        assert out == (-1, n * s - p, 2)
        back, _ = _traced(Conv(3, k, s, "SAME", d), out)
        assert back == (-1, n, 3), (n, p, out, back)


def test_same_with_output_padding_per_axis_maps_back_in_2d():
    for p in itertools.product(range(3), range(2)):
        out, _ = _traced(ConvTranspose(2, (3, 4), (3, 2), "SAME", output_padding=p), (-1, 4, 5, 3))
        assert out == (-1, 12 - p[0], 10 - p[1], 2)
        assert _traced(Conv(3, (3, 4), (3, 2), "SAME"), out)[0] == (-1, 4, 5, 3)


@pytest.mark.parametrize("s, k, d", [(2, 3, 1), (3, 2, 2), (2, 5, 1), (3, 1, 1)])
def test_explicit_padding_with_output_padding_maps_back_to_n(s, k, d):
    for n, p, lo, hi in itertools.product(range(2, 5), range(s), range(2), range(2)):
        if (n - 1) * s + dilated_size(k, d) - lo - hi + p < 1:
            continue
        out, _ = _traced(ConvTranspose(2, k, s, ((lo, hi),), d, output_padding=p), (-1, n, 3))
        assert _traced(Conv(3, k, s, ((lo, hi),), d), out)[0] == (-1, n, 3)


def test_same_output_padding_is_the_transpose_of_the_same_conv_of_that_length():
    """``ConvTranspose(SAME, output_padding=p)`` on ``n`` is the transpose of ``Conv(SAME)`` on ``n s - p``."""
    kernel, u = _random((4, 3, 2, 2), 8), _random((1, 3, 4, 2), 9)
    layer = ConvTranspose(2, (4, 3), (3, 2), "SAME", output_padding=(2, 1), use_bias=False)
    out_shape, _ = _traced(layer, (-1, 3, 4, 2))
    assert out_shape == (-1, 7, 7, 2)

    def both(kernel, u):
        expected = _transpose_of_conv(
            "zeros", kernel, 0.0, u, out_shape, strides=(3, 2), padding="SAME", dilation=1, groups=1
        )
        return layer.apply({"kernel": kernel}, (), u)[0], expected

    y, expected = _compiled(both, kernel, u)
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


# --- output_shape ------------------------------------------------------------------


@pytest.mark.parametrize(
    "spatial, ksize, strides, padding, dilation",
    [
        ((4,), (3,), 2, "VALID", 1),
        ((4,), (3,), 3, "SAME", 1),
        ((4, 3), (3, 2), (2, 3), ((1, 0), (0, 2)), 1),
        ((3, 4), (2, 3), (1, 2), "VALID", (3, 1)),
        ((3, 4), (2, 3), (2, 2), "SAME", (2, 1)),
    ],
)
def test_output_shape_picks_the_output_padding(spatial, ksize, strides, padding, dilation):
    """Every reachable target is met (init and apply), by the layer with the matching
    ``output_padding``: the same shape always, the same numbers for the largest padding."""
    rank = len(spatial)
    s = (strides,) * rank if isinstance(strides, int) else strides
    d = (dilation,) * rank if isinstance(dilation, int) else dilation
    limits = s if padding == "SAME" else tuple(max(a, b) for a, b in zip(s, d, strict=True))
    for output_padding in itertools.product(*(range(m) for m in limits)):
        by_padding = ConvTranspose(3, ksize, strides, padding, dilation, output_padding=output_padding)
        target, param_shapes = _traced(by_padding, (-1, *spatial, 2))
        by_shape = ConvTranspose(3, ksize, strides, padding, dilation, output_shape=target[1:-1])
        assert _traced(by_shape, (-1, *spatial, 2))[0] == target
    params = {name: _random(shape, 10) for name, shape in param_shapes.items()}
    y_shape, y_padding = _compiled(
        lambda p, u: (by_shape.apply(p, (), u)[0], by_padding.apply(p, (), u)[0]),
        params,
        _random((2, *spatial, 2), 11),
    )
    np.testing.assert_array_equal(y_shape, y_padding)


def test_output_shape_int_broadcasts():
    layer = ConvTranspose(3, 3, 2, "SAME", output_shape=7)
    assert _traced(layer, (-1, 4, 4, 1))[0] == (-1, 7, 7, 3)


# --- errors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, input_shape, match",
    [
        (
            lambda: ConvTranspose(4, 3, strides=2, padding="SAME", output_shape=(9, 9)),
            (-1, 4, 4, 1),
            r"^ConvTranspose: argument `output_shape` \(9, 9\) cannot be reached from the input's spatial "
            r"shape \(4, 4\): the reachable sizes are 7 to 8, 7 to 8 \(one range per axis\)",
        ),
        (
            lambda: ConvTranspose(4, 3, strides=(2, 1), output_shape=(8, 6)),
            (-1, 4, 4, 1),
            r"^ConvTranspose: argument `output_shape` \(8, 6\) cannot be reached .*: the reachable sizes "
            r"are 9 to 10, 6 to 6",
        ),
        (
            lambda: ConvTranspose(4, 3, padding=((4, 4),), output_shape=1),
            (-1, 2, 1),
            r"^ConvTranspose: argument `output_shape` \(1,\) cannot be reached .*: the reachable sizes are none",
        ),
        (
            lambda: ConvTranspose(4, 3, output_shape=(8, 8, 8)),
            (-1, 6, 6, 1),
            r"^ConvTranspose: argument `output_shape` has 3 entries \(8, 8, 8\) but the input has 2 spatial",
        ),
        (
            lambda: ConvTranspose(4, 3, padding=2, padding_mode="reflect"),
            (-1, 4, 4, 1),
            r"^ConvTranspose: argument `padding` \(\(2, 2\), \(2, 2\)\) is too large for padding_mode='reflect' "
            r"and output spatial shape \(2, 2\): at most n - 1 per side",
        ),
        (
            lambda: ConvTranspose(4, 3, padding=3, padding_mode="circular"),
            (-1, 5, 1),
            r"^ConvTranspose: argument `padding` \(\(3, 3\),\) is too large for padding_mode='circular' "
            r"and output spatial shape \(1,\): at most n per side",
        ),
        (
            lambda: ConvTranspose(4, 3, padding=3, padding_mode="replicate"),
            (-1, 2, 1),
            r"^ConvTranspose: argument `padding` leaves no output \(output spatial \(-2,\)\)",
        ),
    ],
)
def test_init_errors(make, input_shape, match):
    with pytest.raises(LayerConfigError, match=match):
        make().init(KEY, input_shape)


@pytest.mark.parametrize(
    "make, match",
    [
        (
            lambda: ConvTranspose(4, 3, strides=2, padding="SAME", dilation=3, output_padding=2),
            r"^ConvTranspose: argument `output_padding` \(2,\) must be smaller than the stride \(2,\) on every "
            r"axis with padding='SAME' \(the output is n s - output_padding",
        ),
        (
            lambda: ConvTranspose(4, 3, padding="same", dilation=2, output_padding=1),
            r"^ConvTranspose: argument `output_padding` \(1,\) must be smaller than the stride \(1,\) on every "
            r"axis with padding='SAME'",
        ),
        (
            lambda: ConvTranspose(4, 3, strides=2, output_padding=1, output_shape=(9, 9)),
            r"^ConvTranspose: argument `output_padding` must be 0 when `output_shape` is given \(the output "
            r"padding is solved from the target\), got output_padding=1 and output_shape=\(9, 9\)",
        ),
        (
            lambda: ConvTranspose(4, 3, output_shape=0),
            r"^ConvTranspose: argument `output_shape` must be a positive integer, got 0",
        ),
        (
            lambda: ConvTranspose(4, 3, output_shape=(8.0, 8)),
            r"^ConvTranspose: argument `output_shape` must be a positive integer or 1 or 2 or 3 of them, got \(8.0, 8\)",
        ),
        (
            lambda: ConvTranspose(4, 3, strides=(2, 2), output_shape=(8, 8, 8)),
            r"^ConvTranspose: arguments `strides`, `output_shape` have different numbers of entries",
        ),
        (
            lambda: ConvTranspose(4, (3, 3), output_shape=(8, 8, 8)),
            r"^ConvTranspose: arguments `kernel_size`, `output_shape` have different numbers of entries "
            r"\(\(3, 3\), \(8, 8, 8\)\)",
        ),
        (
            lambda: ConvTranspose(4, 3, padding_mode="mirror"),
            r"^ConvTranspose: argument `padding_mode` must be one of \('zeros', 'reflect', 'replicate', "
            r"'circular'\), got 'mirror'",
        ),
        (
            lambda: ConvTranspose(4, 3, padding=((1, -1), (0, 0)), padding_mode="reflect"),
            r"^ConvTranspose: argument `padding` \(\(1, -1\), \(0, 0\)\) must be non-negative with "
            r"padding_mode='reflect'",
        ),
    ],
)
def test_constructor_errors(make, match):
    with pytest.raises(LayerConfigError, match=match):
        make()
