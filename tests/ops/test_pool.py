"""Forward pooling: naive reference, the course's global pooling values, errors."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcnn as fn
from funcnn import LayerConfigError, checks, ops, shapes
from funcnn.ops.pool import max_unpool
from tests.reference import pool_reference

pytestmark = pytest.mark.usefixtures("x64")

SEED_MATRIX = np.array([[1.0, 3.0, 2.0], [9.0, 7.0, 4.0], [5.0, 6.0, 3.0]])
"""A 3x3 feature map whose maximum is 9 and mean 40 / 9 = 4.44, the course's global-pooling example."""


@pytest.mark.parametrize(
    "spatial, window, strides, padding",
    [
        ((6, 6), (2, 2), (2, 2), "VALID"),
        ((7, 5), (3, 2), (2, 1), "SAME"),
        ((5, 5), (3, 5), (1, 1), ((1, 1), (0, 2))),
        ((8,), (3,), (3,), "SAME"),
        ((4, 5, 4), (2, 2, 2), (1, 2, 2), "VALID"),
    ],
)
@pytest.mark.parametrize("count_include_pad", [True, False])
def test_pools_match_naive_reference(spatial, window, strides, padding, count_include_pad):
    x = jax.random.normal(jax.random.key(0), (2, *spatial, 3), jnp.float64)
    pads = shapes.padding_pairs(
        "test", checks.padding_spec("test", padding), spatial, window, strides, (1,) * len(spatial)
    )
    np.testing.assert_allclose(
        ops.max_pool(x, window, strides, padding),
        pool_reference(x, window, strides, pads, lambda b: np.nanmax(b, axis=1)),
        rtol=1e-12,
    )
    counted = pool_reference(x, window, strides, pads, lambda b: np.nansum(b, axis=1) / b.shape[1])
    uncounted = pool_reference(x, window, strides, pads, lambda b: np.nanmean(b, axis=1))
    np.testing.assert_allclose(
        ops.avg_pool(x, window, strides, padding, count_include_pad=count_include_pad),
        counted if count_include_pad else uncounted,
        rtol=1e-12,
    )


def test_global_pooling_of_the_course_matrix():
    x = SEED_MATRIX[None, :, :, None]
    for layer, expected in ((fn.GlobalMaxPool(), 9.0), (fn.GlobalAvgPool(), 40.0 / 9.0)):
        y, _ = layer.apply((), (), x)
        assert y.shape == (1, 1)
        np.testing.assert_allclose(y[0, 0], expected, rtol=1e-12)
    np.testing.assert_allclose(round(float(fn.GlobalAvgPool().apply((), (), x)[0][0, 0]), 2), 4.44)


def test_max_pool_padding_never_wins():
    x = -jnp.ones((1, 3, 3, 1), jnp.float64)
    np.testing.assert_array_equal(ops.max_pool(x, 2, 1, "SAME"), -jnp.ones((1, 3, 3, 1)))


@pytest.mark.parametrize(
    "shape, window, strides, padding, match",
    [
        ((4, 4), 2, None, "VALID", r"max_pool: argument `x` must have rank >= 3.*\(4, 4\)"),
        ((1, 4, 4, 1), 0, None, "VALID", r"max_pool: argument `window` must be a positive integer, got 0"),
        ((1, 4, 4, 1), 2, -1, "VALID", r"max_pool: argument `strides` must be a positive integer, got -1"),
        ((1, 2, 2, 1), 3, None, "VALID", r"max_pool: argument `window` \(3, 3\) is larger than the padded"),
        ((1, 4, 4, 1), (2, 2, 2), None, "VALID", r"`window` has 3 entries .* 2 spatial"),
    ],
)
def test_pool_errors(shape, window, strides, padding, match):
    with pytest.raises(LayerConfigError, match=match):
        ops.max_pool(jnp.ones(shape), window, strides, padding)


# --- ceil mode, dilation, winner indices, unpooling -------------------------------


def _windows(n, f, s, d, lo, hi, ceil_mode):
    """The window starts ``o s`` (padded coordinates) along one axis, enumerated one by one: a window
    is kept while it fits the padded input, or, in ceil mode, while it starts before the end of
    the last full window plus a stride and inside the input or its low padding (PyTorch's rule)."""
    span = d * (f - 1) + 1
    starts = []
    o = 0
    while True:
        start = o * s
        fits = start + span <= n + lo + hi
        partial = ceil_mode and start < n + lo + hi - span + s and start < n + lo
        if not (fits or partial):
            return starts
        starts.append(start)
        o += 1


def _naive_pool(x, window, strides, pads, dilation, ceil_mode, kind):
    """Loop over every window and every tap; ``kind`` is "max", "avg_pad" (divide by the taps inside
    the explicitly padded input) or "avg" (divide by the real inputs). Returns values and, for
    "max", the flat index of the first maximal input (the first NaN in a NaN window)."""
    x = np.asarray(x, np.float64)
    spatial = x.shape[1:-1]
    starts = [
        _windows(n, f, s, d, lo, hi, ceil_mode)
        for n, f, s, d, (lo, hi) in zip(spatial, window, strides, dilation, pads)
    ]
    out_shape = (x.shape[0], *(len(a) for a in starts), x.shape[-1])
    y = np.zeros(out_shape)
    index = np.zeros(out_shape, np.int64)
    for o in itertools.product(*(range(len(a)) for a in starts)):
        taps = []
        for k in itertools.product(*(range(f) for f in window)):
            p = [a[oi] + ki * d - lo for a, oi, ki, d, (lo, _) in zip(starts, o, k, dilation, pads)]
            in_padded = all(-lo <= pi < n + hi for pi, n, (lo, hi) in zip(p, spatial, pads))
            real = all(0 <= pi < n for pi, n in zip(p, spatial))
            taps.append((p, in_padded, real))
        real_taps = [p for p, _, real in taps if real]
        block = np.stack([x[(slice(None), *p, slice(None))] for p in real_taps])  # (taps, N, C)
        at = (slice(None), *o, slice(None))
        if kind == "max":
            y[at] = np.max(block, axis=0)
            winner = np.argmax((block == y[at]) | np.isnan(block), axis=0)
            flat = [np.ravel_multi_index(p, spatial) for p in real_taps]
            index[at] = np.asarray(flat)[winner]
        else:
            count = sum(in_padded for _, in_padded, _ in taps) if kind == "avg_pad" else len(real_taps)
            y[at] = block.sum(axis=0) / count
    return y, index


CEIL_CASES = [
    # spatial, window, strides, padding
    ((7,), 2, 2, 0),
    ((5,), 3, 2, 1),
    ((2,), 3, 2, 0),
    ((7, 6), 3, 2, 1),
    ((6, 5), (2, 3), (3, 2), ((1, 0), (1, 1))),
    ((5, 4, 6), 2, 2, 1),
    ((4, 5, 3), (3, 2, 2), (2, 2, 1), 0),
]


def _pairs(padding, rank):
    return shapes.padding_pairs(
        "test", checks.padding_spec("test", padding), (1,) * rank, (1,) * rank, (1,) * rank, (1,) * rank
    )


@pytest.mark.parametrize("spatial, window, strides, padding", CEIL_CASES)
@pytest.mark.parametrize("ceil_mode", [True, False])
def test_ceil_mode_pools_match_naive_reference(spatial, window, strides, padding, ceil_mode):
    rank = len(spatial)
    x = jax.random.normal(jax.random.key(1), (2, *spatial, 3), jnp.float64)
    w, s = checks.broadcast("t", "w", window, rank), checks.broadcast("t", "s", strides, rank)
    pads = _pairs(padding, rank)
    options = {"max": {}, "avg_pad": {}, "avg": {"count_include_pad": False}}
    for kind, kwargs in options.items():
        op = ops.max_pool if kind == "max" else ops.avg_pool
        pool = jax.jit(
            lambda x, op=op, kwargs=kwargs: op(x, window, strides, padding, ceil_mode=ceil_mode, **kwargs)
        )
        expected, _ = _naive_pool(x, w, s, pads, (1,) * rank, ceil_mode, kind)
        if expected.size == 0:  # no window fits: only ceil mode's partial window has an output
            with pytest.raises(LayerConfigError, match="is larger than the padded input"):
                pool(x)
        else:
            np.testing.assert_allclose(pool(x), expected, rtol=1e-12, err_msg=kind)


def test_ceil_mode_keeps_a_partial_last_window_only_where_it_starts_on_an_input():
    x = jnp.arange(1.0, 6.0)[None, :, None]  # 1 2 3 4 5
    # Windows of 2 at stride 2: [1 2] [3 4] and, in ceil mode, the partial [5].
    np.testing.assert_array_equal(ops.max_pool(x, 2, ceil_mode=True)[0, :, 0], [2.0, 4.0, 5.0])
    np.testing.assert_array_equal(ops.avg_pool(x, 2, ceil_mode=True)[0, :, 0], [1.5, 3.5, 5.0])
    # With padding 1: [p 1] [2 3] [4 5]; a fourth window would start on the high padding: dropped.
    np.testing.assert_array_equal(ops.max_pool(x, 2, padding=1, ceil_mode=True)[0, :, 0], [1.0, 3.0, 5.0])
    # count_include_pad: [p 1] counts its padding (1 / 2), a window overhanging the padding would not.
    np.testing.assert_array_equal(ops.avg_pool(x, 2, padding=1, ceil_mode=True)[0, :, 0], [0.5, 2.5, 4.5])


@pytest.mark.parametrize(
    "spatial, window, strides, padding, dilation, ceil_mode",
    [
        ((9,), 3, 1, 0, 2, False),
        ((10,), 2, 3, 1, 3, True),
        ((8, 7), 3, (1, 2), 1, (2, 1), False),
        ((7, 8), 2, 2, 1, 2, True),
        ((5, 6, 5), 2, 1, ((1, 0), (0, 1), (1, 1)), (2, 3, 1), False),
    ],
)
def test_dilated_max_pool_and_indices_match_naive_reference(
    spatial, window, strides, padding, dilation, ceil_mode
):
    rank = len(spatial)
    x = jax.random.normal(jax.random.key(2), (2, *spatial, 2), jnp.float64)
    y, indices = jax.jit(
        lambda x: ops.max_pool(
            x, window, strides, padding, dilation=dilation, ceil_mode=ceil_mode, return_indices=True
        )
    )(x)
    expected, expected_indices = _naive_pool(
        x,
        checks.broadcast("t", "w", window, rank),
        checks.broadcast("t", "s", strides, rank),
        _pairs(padding, rank),
        checks.broadcast("t", "d", dilation, rank),
        ceil_mode,
        "max",
    )
    np.testing.assert_allclose(y, expected, rtol=1e-12)
    np.testing.assert_array_equal(indices, expected_indices)
    assert indices.dtype == jnp.int32


@pytest.mark.parametrize("strides", [2, 1], ids=["tiled", "overlapping"])
def test_indices_follow_the_gradient_tie_rule_first_maximum_then_first_nan(strides):
    x = jnp.array(
        [
            [
                [3.0, 1.0, 3.0, 3.0],
                [0.0, 3.0, jnp.nan, 2.0],
                [jnp.nan, 1.0, jnp.nan, 5.0],
                [jnp.nan, 4.0, 5.0, 5.0],
            ]
        ]
    )[..., None]
    _, indices = jax.jit(lambda x: ops.max_pool(x, 2, strides, return_indices=True))(x)
    _, expected = _naive_pool(x, (2, 2), (strides,) * 2, ((0, 0),) * 2, (1, 1), False, "max")
    np.testing.assert_array_equal(indices, expected)
    # The gradient goes to the same winners: each input collects the cotangents of the windows it wins.
    g = jax.random.normal(jax.random.key(5), indices.shape, jnp.float64)
    grad = jax.jit(lambda x, g: jax.vjp(lambda x: ops.max_pool(x, 2, strides), x)[1](g)[0])(x, g)
    expected_grad = np.bincount(np.asarray(indices).ravel(), np.asarray(g).ravel(), minlength=16)
    np.testing.assert_allclose(grad.ravel(), expected_grad, rtol=1e-12)


def test_unpooling_puts_each_value_at_its_index():
    x = jax.random.normal(jax.random.key(3), (2, 6, 5, 3), jnp.float64)
    y, indices = jax.jit(lambda x: ops.max_pool(x, 2, return_indices=True))(x)
    z = max_unpool(y, indices, 2, output_size=(6, 5))
    flat_y, flat_i = np.asarray(y).reshape(2, 6, 3), np.asarray(indices).reshape(2, 6, 3)
    expected = np.zeros((2, 30, 3))
    for n, o, c in itertools.product(range(2), range(6), range(3)):
        expected[n, flat_i[n, o, c], c] = flat_y[n, o, c]
    np.testing.assert_array_equal(z, expected.reshape(2, 6, 5, 3))
    # Every winner comes back in place, everything else is zero.
    np.testing.assert_array_equal(jnp.where(z != 0, x, 0.0), z)


def test_unpooling_default_output_size_inverts_a_tiling_pool():
    x = jax.random.uniform(jax.random.key(4), (1, 4, 6, 2), jnp.float64, 1.0, 2.0)  # maxima beat the zeros
    z = jax.jit(lambda x: max_unpool(*ops.max_pool(x, 2, return_indices=True), 2))(x)
    assert z.shape == x.shape
    np.testing.assert_array_equal(ops.max_pool(z, 2), ops.max_pool(x, 2))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda x: ops.max_pool(x, 2, ceil_mode="yes"), r"max_pool: argument `ceil_mode` must be True or False, got 'yes' \(str\)"),
        (lambda x: ops.avg_pool(x, 2, ceil_mode=1), r"avg_pool: argument `ceil_mode` must be True or False, got 1 \(int\)"),
        (lambda x: ops.max_pool(x, 2, dilation=0), r"max_pool: argument `dilation` must be a positive integer, got 0"),
        (lambda x: ops.max_pool(x, 2, dilation=(1, 1.5)), r"max_pool: argument `dilation` must be a positive integer or 1 or 2 or 3 of them, got \(1, 1.5\)"),
        (lambda x: ops.max_pool(x, 2, return_indices=1), r"max_pool: argument `return_indices` must be True or False, got 1 \(int\)"),
        (lambda x: ops.max_pool(x, 2, 1, "SAME", ceil_mode=True), r"max_pool: argument `ceil_mode` True cannot be combined with padding 'SAME'"),
        (lambda x: ops.max_pool(x, 2, dilation=(2, 2, 2)), r"max_pool: argument `dilation` has 3 entries \(2, 2, 2\) but the input has 2 spatial dimensions"),
        (lambda x: ops.max_pool(x, 3, dilation=3), r"max_pool: argument `window` \(3, 3\) dilated by \(3, 3\) is larger than the padded input"),
        (lambda x: ops.max_pool(jnp.ones((1, 2, 2, 1)), 2, 2, 1, dilation=3), r"max_pool: argument `dilation` 3 leaves a window with padding only \(input spatial shape \(2, 2\), window \(2, 2\), padding \(\(1, 1\), \(1, 1\)\)\)"),
    ],
)  # fmt: skip
def test_pool_option_errors(call, match):
    with pytest.raises(LayerConfigError, match=match):
        call(jnp.ones((1, 6, 6, 1)))


_Y, _I = jnp.ones((2, 3, 3, 1)), jnp.zeros((2, 3, 3, 1), jnp.int32)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: max_unpool(_Y, _I.astype(jnp.float32), 2), r"max_unpool: argument `indices` must be an integer array .* got dtype float32 \(shape \(2, 3, 3, 1\)\)"),
        (lambda: max_unpool(_Y, _I[:, :2], 2), r"max_unpool: argument `indices` has shape \(2, 2, 3, 1\) but `x` has shape \(2, 3, 3, 1\); pass the indices of the max pool"),
        (lambda: max_unpool(_Y, _I[..., 0], 2), r"max_unpool: argument `indices` has shape \(2, 3, 3\) but `x` has shape \(2, 3, 3, 1\)"),
        (lambda: max_unpool(_Y[0, 0], _I[0, 0], 2), r"max_unpool: argument `x` must have rank >= 3 .* but has shape \(3, 1\)"),
        (lambda: max_unpool(_Y, _I, (2, 2, 2)), r"max_unpool: argument `window` has 3 entries \(2, 2, 2\) but the input has 2 spatial dimensions"),
        (lambda: max_unpool(_Y, _I, 2, output_size=(8, 6)), r"max_unpool: argument `output_size` \(8, 6\) does not fit `x` of spatial shape \(3, 3\): a max pool with window \(2, 2\), strides \(2, 2\) and padding \(\(0, 0\), \(0, 0\)\) gives that shape for input sizes in \(\(5, 7\), \(5, 7\)\) per axis"),
        (lambda: max_unpool(_Y, _I, 2, output_size=(6, 6, 6)), r"max_unpool: argument `output_size` has 3 entries \(6, 6, 6\) but the input has 2 spatial dimensions"),
        (lambda: max_unpool(_Y, _I, 2, output_size=0), r"max_unpool: argument `output_size` must be a positive integer, got 0"),
        (lambda: max_unpool(_Y, _I, 2, padding="SAME"), r"max_unpool: argument `padding` 'SAME' depends on the pooled input's size"),
        (lambda: max_unpool(_Y, _I, 2, padding=-1), r"max_unpool: argument `padding` must be non-negative, got -1"),
        (lambda: max_unpool(_Y, _I + 36, 2), r"max_unpool: argument `indices` holds values from 36 to 36, outside \[0, 36\) for the output spatial shape \(6, 6\); were they taken from another shape\?"),
        (lambda: max_unpool(_Y, _I - 1, 2), r"max_unpool: argument `indices` holds values from -1 to -1, outside \[0, 36\)"),
        (lambda: max_unpool(_Y, _I, 2, grad="auto"), r"max_unpool: argument `grad` must be one of \('custom', 'custom_vjp', 'autodiff'\), got 'auto'"),
        (lambda: max_unpool(_Y[:, :1, :1], _I[:, :1, :1], 2, padding=1), r"max_unpool: argument `padding` \(\(1, 1\), \(1, 1\)\) leaves no output for `x` of spatial shape \(1, 1\)"),
    ],
)  # fmt: skip
def test_unpool_errors(call, match):
    with pytest.raises(LayerConfigError, match=match):
        call()


def test_traced_out_of_range_indices_are_dropped():
    """Traced indices cannot be checked; one past the end and a negative one write nothing."""
    y = jnp.arange(1.0, 5.0).reshape(1, 2, 2, 1)
    indices = jnp.array([0, 99, -1, 15], jnp.int32).reshape(1, 2, 2, 1)
    z = jax.jit(lambda y, i: max_unpool(y, i, 2))(y, indices)
    expected = np.zeros(16)
    expected[[0, 15]] = [1.0, 4.0]
    np.testing.assert_array_equal(z.ravel(), expected)
