"""The resize ops: the hand-written VJP against JAX's autodiff (float64), the interpolation matrices,
agreement with ``jax.image.resize`` where the two agree, dtypes, sharding and errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from funcnn.core import LayerConfigError
from funcnn.ops.resize import MAX_TAPS, band, interpolation_matrix, nearest_index, resize, upsample
from funcnn.testing import check_vjp

pytestmark = pytest.mark.usefixtures("x64")

TOLERANCE = 1e-12
METHODS = ["nearest", "nearest-exact", "linear", "bicubic"]

# Per axis: integer up- and downsampling, sizes that do not divide, unchanged axes, sizes 1.
RESIZES = [
    ((7,), (17,)),
    ((9,), (4,)),
    ((1,), (5,)),
    ((5, 6), (10, 18)),
    ((5, 7), (8, 4)),
    ((8, 6), (4, 1)),
    ((2, 3, 4), (4, 6, 2)),
    ((3, 4, 5), (6, 3, 5)),
]


def _x(spatial, seed=0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=(2, *spatial, 3)))


def _check_rule_per_method(op, x, *args):
    """``op(x, *args, method)`` by the rule against autodiff, every method at once (one compiled
    program each way): argument ``i`` is the input of method ``METHODS[i]``."""

    def by(grad):
        return jax.jit(lambda *xs: {m: op(x, *args, m, grad=grad) for m, x in zip(METHODS, xs)})

    xs = [x + i for i in range(len(METHODS))]
    check_vjp(by("custom"), *xs, reference=by("autodiff"), rtol=TOLERANCE, atol=TOLERANCE)


@pytest.mark.parametrize("spatial, out", RESIZES)
def test_rule_matches_autodiff(spatial, out):
    _check_rule_per_method(resize, _x(spatial), out)


def test_upsample_rule_matches_autodiff():
    _check_rule_per_method(upsample, _x((4, 5)), (2, 3))


@pytest.mark.parametrize("method, m", [("linear", 120), ("bicubic", 90)])
def test_wide_transposed_band_takes_the_dense_path_and_matches_autodiff(method, m):
    """Upsampling 3 -> m: each input is read by more than MAX_TAPS outputs."""
    assert band(method, 3, m, True).index.shape[0] > MAX_TAPS
    check_vjp(
        jax.jit(lambda x: resize(x, m, method)),
        _x((3,)),
        reference=jax.jit(lambda x: resize(x, m, method, grad="autodiff")),
        rtol=TOLERANCE,
        atol=TOLERANCE,
    )


@given(n=st.integers(1, 40), m=st.integers(1, 40), method=st.sampled_from(METHODS))
def test_every_row_of_the_matrix_sums_to_one_and_its_bands_rebuild_it(n, m, method):
    """Every method interpolates: constants are kept. The bands of A and of A^T are A."""
    matrix = interpolation_matrix(method, n, m)
    assert matrix.shape == (m, n)
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0, rtol=1e-14)
    for transpose in (False, True):
        rows = band(method, n, m, transpose)
        rebuilt = np.zeros((n, m) if transpose else (m, n))
        for index, weight in zip(rows.index, rows.weight):
            np.add.at(rebuilt, (np.arange(rebuilt.shape[0]), index), weight)
        np.testing.assert_array_equal(rebuilt, matrix.T if transpose else matrix)


# Sizes 1-D: up, down (with inputs that no output reads), not dividing.
INF_SIZES = [(3, 6), (7, 3), (9, 4), (5, 8), (3, 5), (10, 3)]


def _with_infs(n, seed=0):
    """A vector of length ``n`` with ``inf`` first and ``-inf`` last (where ``n > 1``)."""
    v = np.random.default_rng(seed).normal(size=n)
    v[0] = np.inf
    if n > 1:
        v[-1] = -np.inf
    return v


def _zero_safe_product(matrix, v):
    """``matrix @ v`` where a zero entry contributes an exact zero (not ``0 * inf = nan``), as a
    sum over the non-zeros only, which is what PyTorch computes for the nearest and linear kernels."""
    with np.errstate(invalid="ignore"):  # 0 * inf (masked out) and inf - inf (a real nan) here
        return np.where(matrix != 0, matrix * v, 0.0).sum(axis=1)


@pytest.mark.parametrize("grad", ["custom", "autodiff"])
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("n, m", INF_SIZES)
def test_inf_inputs_propagate_without_nan_from_zero_weights(n, m, method, grad):
    x = _with_infs(n)
    y = np.asarray(resize(jnp.asarray(x)[None, :, None], m, method, grad=grad)[0, :, 0])
    np.testing.assert_allclose(y, _zero_safe_product(interpolation_matrix(method, n, m), x), rtol=1e-12)


def test_inf_input_upsampled_linearly_is_inf_where_pytorch_has_inf():
    x = jnp.array([[np.inf], [1.0], [2.0]])[None]
    for grad in ("custom", "autodiff"):
        y = upsample(x, 2, "linear", grad=grad)[0, :, 0]
        np.testing.assert_array_equal(y, [np.inf, np.inf, np.inf, 1.25, 1.75, 2.0])


@pytest.mark.parametrize("grad", ["custom", "autodiff"])
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("n, m", INF_SIZES)
def test_inf_cotangents_give_no_nan_at_inputs_that_no_output_reads(n, m, method, grad):
    g = _with_infs(m, seed=1)
    _, vjp = jax.vjp(lambda x: resize(x, m, method, grad=grad), jnp.zeros((1, n, 1)))
    (dx,) = vjp(jnp.asarray(g)[None, :, None])
    matrix = interpolation_matrix(method, n, m)
    np.testing.assert_allclose(dx[0, :, 0], _zero_safe_product(matrix.T, g), rtol=1e-12)
    unread = ~(matrix != 0).any(axis=0)
    np.testing.assert_array_equal(dx[0, unread, 0], 0.0)


def test_nearest_downsampling_gradient_of_inf_is_zero_at_unread_inputs():
    _, vjp = jax.vjp(lambda x: resize(x, 3, "nearest"), jnp.zeros((1, 7, 1)))
    (dx,) = vjp(jnp.array([np.inf, 1.0, 2.0])[None, :, None])
    np.testing.assert_array_equal(dx[0, :, 0], [np.inf, 0, 1, 0, 2, 0, 0])


@given(n=st.integers(1, 40), m=st.integers(1, 40), method=st.sampled_from(METHODS))
def test_band_indices_of_rows_without_entries_keep_their_neighbours_order(n, m, method):
    """A row of zeros (an input no output reads) repeats a neighbour's columns: for nearest and
    linear, whose bands move monotonically, every band position's indices are sorted."""
    for transpose in (False, True):
        rows = band(method, n, m, transpose)
        if method != "bicubic":
            assert np.all(np.diff(rows.index, axis=1) >= 0)
        matrix = interpolation_matrix(method, n, m)
        empty = ~(matrix.T if transpose else matrix).any(axis=1)
        assert np.all(rows.weight[:, empty] == 0)


@given(n=st.integers(1, 30), m=st.integers(1, 90))
def test_nearest_index_is_the_exact_floor(n, m):
    """The integer formulas against exact rational arithmetic."""
    from fractions import Fraction

    for d, i in enumerate(nearest_index("nearest", n, m)):
        assert i == min(int(Fraction(d * n, m)), n - 1)
    for d, i in enumerate(nearest_index("nearest-exact", n, m)):
        assert i == min(int((d + Fraction(1, 2)) * Fraction(n, m)), n - 1)


@pytest.mark.parametrize("scale", [2, 3, (2, 1), (1, 3)])
def test_nearest_upsampling_repeats_every_pixel(scale):
    x = _x((4, 5))
    s = scale if isinstance(scale, tuple) else (scale, scale)
    np.testing.assert_array_equal(upsample(x, scale), jnp.repeat(jnp.repeat(x, s[0], 1), s[1], 2))


def test_nearest_upsampling_gradient_is_the_sum_over_each_block():
    g = _x((8, 6), seed=3)
    dx = jax.vjp(lambda x: upsample(x, 2), _x((4, 3)))[1](g)[0]
    np.testing.assert_allclose(dx, g.reshape(2, 4, 2, 3, 2, 3).sum(axis=(2, 4)), rtol=1e-15)


@pytest.mark.parametrize("method", METHODS)
def test_upsample_is_resize_to_the_multiplied_shape(method):
    x = _x((3, 4, 2))
    np.testing.assert_array_equal(upsample(x, (2, 3, 1), method), resize(x, (6, 12, 2), method))


@pytest.mark.parametrize("method", METHODS)
def test_resize_to_the_same_shape_is_the_identity(method):
    x = _x((5, 4))
    np.testing.assert_array_equal(resize(x, (5, 4), method), x)


@pytest.mark.parametrize("name", ["linear", "bilinear", "trilinear"])
def test_pytorch_names_of_linear_interpolation_are_one_method(name):
    x = _x((4,))
    np.testing.assert_array_equal(resize(x, 7, name), resize(x, 7, "linear"))


@pytest.mark.parametrize("spatial, out", RESIZES)
def test_nearest_exact_equals_jax_image_resize_nearest(spatial, out):
    x = _x(spatial)
    expected = jax.image.resize(x, (2, *out, 3), "nearest")
    np.testing.assert_array_equal(resize(x, out, "nearest-exact"), expected)


@pytest.mark.parametrize("spatial, out", RESIZES)
def test_linear_equals_jax_image_resize_linear_without_antialiasing(spatial, out):
    x = _x(spatial)
    expected = jax.image.resize(x, (2, *out, 3), "linear", antialias=False)
    np.testing.assert_allclose(resize(x, out, "linear"), expected, rtol=1e-12, atol=1e-13)


def test_jax_image_resize_antialiases_when_downsampling_and_we_do_not():
    x = _x((9, 9))
    ours = resize(x, (4, 4), "linear")
    assert float(jnp.abs(ours - jax.image.resize(x, (2, 4, 4, 3), "linear")).max()) > 1e-3
    np.testing.assert_allclose(ours, jax.image.resize(x, (2, 4, 4, 3), "linear", antialias=False), atol=1e-13)


def test_nearest_differs_from_jax_image_resize_by_the_half_pixel_offset():
    """PyTorch's nearest reads floor(d n / m); jax.image.resize floor((d + 1/2) n / m)."""
    x = jnp.arange(5.0).reshape(1, 5, 1)
    np.testing.assert_array_equal(resize(x, 3)[0, :, 0], [0.0, 1.0, 3.0])
    np.testing.assert_array_equal(jax.image.resize(x, (1, 3, 1), "nearest")[0, :, 0], [0.0, 2.0, 4.0])
    np.testing.assert_array_equal(resize(x, 3, "nearest-exact")[0, :, 0], [0.0, 2.0, 4.0])


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
@pytest.mark.parametrize("method", METHODS)
def test_output_and_gradient_keep_the_input_dtype(method, dtype):
    x = _x((4, 5)).astype(dtype)
    y, vjp = jax.vjp(lambda x: resize(x, (7, 3), method), x)
    (dx,) = vjp(jnp.ones_like(y))
    assert y.dtype == dx.dtype == dtype


def test_integer_inputs_are_resized_in_the_default_float():
    y = upsample(jnp.arange(6, dtype=jnp.int32).reshape(1, 6, 1), 2, "linear")
    assert y.dtype == jnp.float64
    np.testing.assert_allclose(y[0, :4, 0], [0.0, 0.25, 0.75, 1.25])


@pytest.mark.parametrize("method", ["nearest", "linear"])
@pytest.mark.parametrize("kind", ["explicit", "shard_map"])
def test_gradients_of_a_sharded_batch_equal_the_single_device_ones(kind, method):
    x = np.asarray(_x((5, 6)).repeat(4, axis=0))

    def loss(x):
        return (resize(x, (9, 4), method) ** 2).sum()

    mesh = jax.make_mesh((4,), ("data",), axis_types=(AxisType.Explicit,))
    with jax.set_mesh(mesh):
        xs = jax.device_put(x, NamedSharding(mesh, P("data")))
        grad = jax.grad(loss)
        if kind == "shard_map":
            grad = jax.shard_map(grad, mesh=mesh, in_specs=P("data"), out_specs=P("data"))
        got = jax.jit(grad)(xs)
    np.testing.assert_allclose(np.asarray(got), np.asarray(jax.grad(loss)(x)), rtol=1e-12)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda x: resize(x, (4, 4, 4)), r"^resize: argument `shape` has 3 entries \(4, 4, 4\) but the input has 2 spatial dimensions \(input shape \(2, 5, 6, 3\)\)"),
        (lambda x: upsample(x, (2,)), r"^upsample: argument `scale` has 1 entries \(2,\) but the input has 2 spatial dimensions \(input shape \(2, 5, 6, 3\)\)"),
        (lambda x: upsample(x, 2.5), r"^upsample: argument `scale` must be a positive integer or a sequence of them, got 2.5 \(float\)"),
        (lambda x: resize(x, (0, 4)), r"^resize: argument `shape` must be a positive integer or 1 or 2 or 3 of them, got \(0, 4\)"),
        (lambda x: resize(x, 4, "area"), r"^resize: argument `method` must be one of \('nearest', 'nearest-exact', 'linear', 'bilinear', 'trilinear', 'bicubic'\), got 'area'"),
        (lambda x: upsample(x, 2, grad="manual"), r"^upsample: argument `grad` must be one of \('custom', 'custom_vjp', 'autodiff'\), got 'manual'"),
        (lambda x: resize(x[0], (4, 4)), r"^resize: argument `shape` has 2 entries \(4, 4\) but the input has 1 spatial dimensions \(input shape \(5, 6, 3\)\)"),
        (lambda x: upsample(x[:, :, 0, 0], 2), r"^upsample: argument `x` must have rank 3, 4 or 5, but has shape \(2, 5\) \(rank 2\)"),
        (lambda x: upsample(x[:, :0], 2), r"^upsample: argument `x` has an empty spatial axis: shape \(2, 0, 6, 3\)"),
    ],
)  # fmt: skip
def test_bad_arguments_are_refused_with_a_message_naming_them(call, match):
    with pytest.raises(LayerConfigError, match=match):
        call(_x((5, 6)))
