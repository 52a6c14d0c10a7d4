"""Adaptive pooling: PyTorch's windows, the values and gradients against loops over each window
(float64), the hand-written rules against JAX's autodiff, the tie rule, and the op's errors."""

import functools
import itertools
import math
import re
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax import lax
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P
from jax.test_util import check_grads

from funcnn.core import LayerConfigError
from funcnn.ops import adaptive_pool
from funcnn.ops.adaptive_pool import adaptive_avg_pool, adaptive_max_pool
from funcnn.ops.pool import max_pool
from funcnn.testing import check_vjp

pytestmark = pytest.mark.usefixtures("x64")

TOLERANCE = 1e-12
OPS = {"avg": adaptive_avg_pool, "max": adaptive_max_pool}

# (spatial, output_size): windows that tile, that do not, outputs larger than the input, None entries,
# and long windows that do not tile (read as one table: ``adaptive_pool.LONG_WINDOW``).
GRID = [
    ((9,), 3),
    ((10,), 4),
    ((3,), 7),
    ((7, 9), (3, 4)),
    ((5, 6), (None, 4)),
    ((8, 5), (4, 7)),
    ((4, 5, 6), (2, 3, 4)),
    ((3, 4, 2), (5, None, 3)),
    ((6, 5, 4), 1),
    ((1001,), 3),
]
IDS = [f"{'x'.join(map(str, s))}->{o}" for s, o in GRID]


def _window(n, o, i):
    """Window ``i`` of ``o`` over ``n`` inputs, from the definition: [floor(i n / o), ceil((i + 1) n / o))."""
    return math.floor(Fraction(i * n, o)), math.ceil(Fraction((i + 1) * n, o))


def _out_spatial(spatial, output_size):
    sizes = output_size if isinstance(output_size, tuple) else (output_size,) * len(spatial)
    return tuple(n if o is None else o for n, o in zip(spatial, sizes))


def _reference(kind, x, g, output_size):
    """``Y`` and ``dL/dX`` by a loop over the output positions: each one's box of inputs, its mean
    (the gradient spread evenly) or its maximum (the gradient to its first maximum in row-major
    order, or its first NaN: ``np.argmax`` of the flattened box)."""
    x, g = np.asarray(x), np.asarray(g)
    spatial = x.shape[1:-1]
    out = _out_spatial(spatial, output_size)
    y = np.zeros((x.shape[0], *out, x.shape[-1]))
    dx = np.zeros_like(x)
    batch, channels = x.shape[0], x.shape[-1]
    for position in itertools.product(*map(range, out)):
        box = tuple(slice(*_window(n, o, i)) for n, o, i in zip(spatial, out, position))
        at_box, at_output = (slice(None), *box, slice(None)), (slice(None), *position, slice(None))
        flat = x[at_box].reshape(batch, -1, channels)
        if kind == "avg":
            y[at_output] = flat.mean(axis=1)
            dx[at_box] += g[at_output][:, *(None,) * len(spatial), :] / flat.shape[1]
            continue
        first = np.argmax(flat, axis=1)
        y[at_output] = np.take_along_axis(flat, first[:, None], axis=1)[:, 0]
        for b, c in itertools.product(range(batch), range(channels)):
            offset = np.unravel_index(first[b, c], x[at_box].shape[1:-1])
            dx[(b, *(s.start + k for s, k in zip(box, offset)), c)] += g[at_output][b, c]
    return y, dx


def _unique(shape, seed=0):
    """Distinct values (a shuffled, scaled ``arange``): no ties."""
    size = math.prod(shape)
    return jnp.asarray(np.random.default_rng(seed).permutation(size).reshape(shape) / size - 0.5)


def _few_values(shape, seed=0):
    """Values drawn from {0, 1, 2}: many ties."""
    return jnp.asarray(np.random.default_rng(seed).integers(0, 3, shape).astype(np.float64))


def _cotangent(shape, seed=1):
    return jax.random.normal(jax.random.key(seed), shape, jnp.float64)


@functools.partial(jax.jit, static_argnums=0)
def _value_and_vjp_of(fn, x, g):
    y, vjp = jax.vjp(fn, x)
    return y, vjp(g)[0]


def _value_and_vjp(kind, x, g, output_size, grad):
    return _value_and_vjp_of(functools.partial(OPS[kind], output_size=output_size, grad=grad), x, g)


# --- the windows --------------------------------------------------------------------


def test_axis_tables_hold_pytorchs_windows():
    for n, o in itertools.product(range(1, 12), range(1, 15)):
        w = adaptive_pool.axis_windows(n, o)
        for i in range(o):
            start, end = _window(n, o, i)
            assert w.length[i] == end - start
            np.testing.assert_array_equal(w.index[i][w.valid[i]], np.arange(start, end))
            assert np.all(w.index[i][~w.valid[i]] == end - 1)
        for h in range(n):
            holding = [i for i in range(o) if _window(n, o, i)[0] <= h < _window(n, o, i)[1]]
            used = w.offset[h] >= 0
            assert list(w.holder[h][used]) == holding
            np.testing.assert_array_equal(w.offset[h][used], [h - _window(n, o, i)[0] for i in holding])
        assert w.tiles == (n % o == 0)


def test_windows_of_an_axis_share_at_most_one_input_when_the_output_is_smaller():
    for n, o in itertools.product(range(1, 30), repeat=2):
        if o <= n:
            assert adaptive_pool.axis_windows(n, o).holder.shape[1] <= 2


# --- values and gradients against loops over the windows -------------------------------


@pytest.mark.parametrize("kind, values", [("avg", "unique"), ("max", "ties")])
@pytest.mark.parametrize("spatial, output_size", GRID, ids=IDS)
def test_values_and_gradients_match_a_loop_over_the_windows(spatial, output_size, kind, values):
    """The custom rule against the loop; the autodiff path against the custom rule below. With
    values from {0, 1, 2} every window has ties, and its gradient goes to its first maximum."""
    x = (_unique if values == "unique" else _few_values)((2, *spatial, 3))
    g = _cotangent((2, *_out_spatial(spatial, output_size), 3))
    y, dx = _value_and_vjp(kind, x, g, output_size, "custom")
    y_ref, dx_ref = _reference(kind, x, g, output_size)
    np.testing.assert_allclose(y, y_ref, rtol=TOLERANCE, atol=TOLERANCE)
    np.testing.assert_allclose(dx, dx_ref, rtol=TOLERANCE, atol=TOLERANCE)


@pytest.mark.parametrize("channels", [3, 40], ids=["short rows: scatter", "long rows: gathers"])
@pytest.mark.parametrize(
    "spatial, output_size", [((10,), 4), ((3,), 7), ((9, 7), (4, 3)), ((9, 1), (4, None))]
)
def test_both_ways_back_of_the_max_rule_match_the_loop(spatial, output_size, channels):
    """Windows that do not tile send the gradient back by a scatter where the rows after the axis are
    short (channels on the last axis), else by gathers; both follow the tie rule."""
    x = _few_values((2, *spatial, channels))
    g = _cotangent((2, *_out_spatial(spatial, output_size), channels))
    _, dx = _value_and_vjp("max", x, g, output_size, "custom")
    np.testing.assert_allclose(dx, _reference("max", x, g, output_size)[1], rtol=TOLERANCE, atol=TOLERANCE)


# --- the hand-written rules against autodiff ---------------------------------------------


@pytest.mark.parametrize("kind", ["avg", "max"])
@pytest.mark.parametrize("spatial, output_size", GRID, ids=IDS)
def test_custom_rules_match_autodiff(spatial, output_size, kind):
    """Max pooling on values from {0, 1, 2}: autodiff of the forward pass follows the same tie rule."""
    x = (_unique if kind == "avg" else _few_values)((2, *spatial, 3))
    op = OPS[kind]
    check_vjp(
        jax.jit(lambda x: op(x, output_size)),
        x,
        reference=jax.jit(lambda x: op(x, output_size, grad="autodiff")),
        rtol=TOLERANCE,
        atol=TOLERANCE,
    )


@settings(max_examples=4)
@given(rank=st.integers(1, 3), data=st.data())
def test_custom_rules_match_autodiff_hypothesis(rank, data):
    spatial = tuple(data.draw(st.integers(1, 7)) for _ in range(rank))
    output_size = tuple(data.draw(st.one_of(st.none(), st.integers(1, 9))) for _ in range(rank))
    x = _few_values((data.draw(st.integers(1, 2)), *spatial, data.draw(st.integers(1, 2))), seed=rank)
    for op in OPS.values():
        check_vjp(
            jax.jit(lambda x, op=op: op(x, output_size)),
            x,
            reference=jax.jit(lambda x, op=op: op(x, output_size, grad="autodiff")),
            rtol=TOLERANCE,
            atol=TOLERANCE,
        )


# --- the tie rule and its edge cases -------------------------------------------------


@functools.partial(jax.jit, static_argnums=1)
def _max_grad(x, output_size):
    """dL/dX for L = sum(adaptive_max_pool(x)) (a cotangent of ones)."""
    return jax.grad(lambda x: jnp.sum(adaptive_max_pool(x, output_size)))(x)


def test_a_constant_input_gives_each_window_its_first_input():
    x = jnp.ones((1, 5, 1))
    # Five inputs, three windows [0, 2), [1, 4), [3, 5): their first inputs 0, 1 and 3.
    np.testing.assert_array_equal(_max_grad(x, 3)[0, :, 0], [1.0, 1.0, 0.0, 1.0, 0.0])


def test_a_constant_image_gives_each_window_its_top_left_corner():
    x = jnp.ones((1, 4, 5, 1))
    # Rows: windows [0, 2), [1, 3), [2, 4); columns: [0, 3), [2, 5).
    expected = np.zeros((4, 5))
    for r, c in itertools.product((0, 1, 2), (0, 2)):
        expected[r, c] += 1.0
    np.testing.assert_array_equal(_max_grad(x, (3, 2))[0, :, :, 0], expected)


def test_row_major_order_decides_between_equal_maxima_in_windows_that_do_not_tile():
    """Four 2x2 windows of a 3x3 image (overlapping by one): the top-left window holds its maximum 5
    at (0, 1) and (1, 0); row-major order reaches (0, 1) first (column-first order would not)."""
    x = jnp.array([[0.0, 5.0, 1.0], [5.0, 2.0, 3.0], [1.0, 0.0, 4.0]])[None, :, :, None]
    grad = _max_grad(x, 2)[0, :, :, 0]
    # Windows: top-left -> (0, 1); top-right [[5, 1], [2, 3]] -> (0, 1); bottom-left [[5, 2], [1, 0]] -> (1, 0);
    # bottom-right [[2, 3], [0, 4]] -> (2, 2).
    expected = np.zeros((3, 3))
    expected[0, 1], expected[1, 0], expected[2, 2] = 2.0, 1.0, 1.0
    np.testing.assert_array_equal(grad, expected)


def test_row_major_order_decides_in_three_dimensions():
    x = np.zeros((1, 3, 3, 3, 1))
    for position in [(1, 0, 2), (0, 2, 1), (2, 0, 0), (0, 2, 2)]:
        x[(0, *position, 0)] = 7.0
    grad = _max_grad(jnp.asarray(x), (1, 1, 1))[0, ..., 0]
    expected = np.zeros((3, 3, 3))
    expected[0, 2, 1] = 1.0
    np.testing.assert_array_equal(grad, expected)
    # Windows that do not tile (two of three inputs per axis) keep the same order.
    grad = _max_grad(jnp.asarray(x), (2, 2, 2))[0, ..., 0]
    y = adaptive_max_pool(jnp.asarray(x), 2)
    _, expected = _reference("max", x, np.ones(y.shape), 2)
    np.testing.assert_array_equal(grad, expected[0, ..., 0])


def test_nan_windows_give_their_gradient_to_their_first_nan():
    x = jnp.array([1.0, jnp.nan, jnp.nan, 3.0, 0.0])[None, :, None]
    # Windows [0, 3) and [2, 5): the first NaNs are at 1 and 2.
    for grad in ("custom", "autodiff"):
        y, dx = _value_and_vjp("max", x, jnp.ones((1, 2, 1)), 2, grad)
        assert bool(jnp.all(jnp.isnan(y)))
        np.testing.assert_array_equal(dx[0, :, 0], [0.0, 1.0, 1.0, 0.0, 0.0])


def test_a_nan_in_a_window_that_does_not_tile_wins_in_row_major_order():
    x = np.zeros((1, 3, 3, 1))
    x[0, 1, 0, 0] = x[0, 0, 1, 0] = np.nan
    grad = _max_grad(jnp.asarray(x), (2, 2))[0, :, :, 0]
    _, expected = _reference("max", x, np.ones((1, 2, 2, 1)), (2, 2))
    np.testing.assert_array_equal(grad, expected[0, :, :, 0])
    assert grad[0, 1] == 2.0  # the top windows' first NaN; the bottom-left window's is (1, 0)


def test_minus_infinity_windows_give_their_gradient_to_their_first_input():
    x = jnp.full((1, 5, 1), -jnp.inf)
    np.testing.assert_array_equal(_max_grad(x, 3)[0, :, 0], [1.0, 1.0, 0.0, 1.0, 0.0])


def test_infinite_inputs_do_not_leak_into_other_windows_of_the_mean():
    x = jnp.array([jnp.inf, 1.0, 2.0, 3.0, 4.0])[None, :, None]
    y = adaptive_avg_pool(x, 3)[0, :, 0]  # windows [0, 2), [1, 4), [3, 5)
    np.testing.assert_array_equal(y, [jnp.inf, 2.0, 3.5])


@settings(max_examples=6)
@given(
    rank=st.integers(1, 3),
    data=st.data(),
    values=st.sampled_from([(0.0, 1.0), (-np.inf, 0.0, 1.0), (np.nan, 0.0, 1.0)]),
)
def test_winners_agree_with_max_pool_when_the_windows_tile(rank, data, values):
    """Where the windows tile (``o`` divides ``n``) adaptive max pooling is ``max_pool`` with window
    ``n / o``: the same values and the same winners, ties, NaNs and -inf included."""
    window = tuple(data.draw(st.integers(1, 3)) for _ in range(rank))
    out = tuple(data.draw(st.integers(1, 3)) for _ in range(rank))
    shape = (2, *(f * o for f, o in zip(window, out)), 2)
    picks = data.draw(
        st.lists(st.integers(0, len(values) - 1), min_size=math.prod(shape), max_size=math.prod(shape))
    )
    x = jnp.asarray(np.asarray(values)[picks].reshape(shape))
    g = _cotangent((2, *out, 2))
    y, dx = _value_and_vjp("max", x, g, out, "custom")
    y_pool, dx_pool = _value_and_vjp_of(functools.partial(max_pool, window=window), x, g)
    np.testing.assert_array_equal(y, y_pool)
    np.testing.assert_array_equal(dx, dx_pool)


# --- second order, transformations, dtypes, sharding -------------------------------------


@pytest.mark.parametrize("kind, output_size", [("avg", (2, 5)), ("max", (3, 2))])
def test_second_order(kind, output_size):
    x = _unique((2, 5, 4, 2))
    check_grads(lambda x: OPS[kind](x, output_size), (x,), order=2, modes=["rev"], eps=1e-4)


def test_composes_with_vmap_jit_and_scan():
    xs = _unique((3, 2, 7, 6, 2))

    def loss(x, grad="custom"):
        return jnp.sum(adaptive_max_pool(x, (3, 4), grad=grad) ** 2) + jnp.sum(
            adaptive_avg_pool(x, (5, None), grad=grad) ** 2
        )

    expected = jnp.stack([jax.grad(functools.partial(loss, grad="autodiff"))(x) for x in xs])
    np.testing.assert_allclose(jax.jit(jax.vmap(jax.grad(loss)))(xs), expected, rtol=0, atol=TOLERANCE)
    _, scanned = lax.scan(lambda total, x: (total + loss(x), jax.grad(loss)(x)), jnp.zeros(()), xs)
    np.testing.assert_allclose(scanned, expected, rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("kind", ["avg", "max"])
def test_values_and_cotangents_keep_the_input_dtype(kind, dtype):
    x = _unique((2, 7, 6, 3)).astype(dtype)
    y, dx = _value_and_vjp(kind, x, jnp.ones((2, 3, 4, 3), dtype), (3, 4), "custom")
    assert y.dtype == dx.dtype == dtype


@pytest.mark.parametrize("kind", ["avg", "max"])
def test_integer_inputs_pool_in_the_default_float(kind):
    x = jnp.arange(2 * 5 * 3, dtype=jnp.int32).reshape(2, 5, 3)
    y = OPS[kind](x, 2)
    assert y.dtype == jnp.float64
    np.testing.assert_array_equal(y, _reference(kind, x.astype(np.float64), np.zeros(y.shape), 2)[0])


def test_zero_size_batch():
    x = jnp.zeros((0, 7, 6, 2))
    for op in OPS.values():
        assert jax.grad(lambda x, op=op: jnp.sum(op(x, (3, 4))))(x).shape == x.shape


def test_a_large_window_compiles_to_a_fixed_number_of_operations():
    """Windows that tile are one reshape and one reduction however large; windows that do not are a
    chain of one gather per slot, whose length grows with the window, so only tiling sizes stay
    constant (a global pool of 64 inputs is as short as one of 2)."""

    def equations(side):
        x = jnp.ones((2, side, side, 3))
        return len(jax.make_jaxpr(jax.grad(lambda x: adaptive_max_pool(x, 1).sum()))(x).eqns)

    assert equations(2) == equations(64)


@pytest.mark.parametrize("grad", ["custom", "autodiff"])
def test_long_windows_read_as_one_table_agree_with_the_chain(monkeypatch, grad):
    """Windows longer than ``LONG_WINDOW`` are one gather and one reduction, shorter ones a chain of
    one step per slot: both give the same values, winners (ties and first NaNs) and gradients."""
    x = _few_values((2, 100, 7, 3)).at[0, 40, 2, 1].set(jnp.nan).at[0, 50, 3, 1].set(jnp.nan)
    x = x.at[1, 70:90, :, 0].set(jnp.nan)
    g = _cotangent((2, 3, 2, 3))

    def value_and_vjp():
        y, vjp = jax.vjp(lambda x: adaptive_max_pool(x, (3, 2), grad=grad), x)
        return y, vjp(g)[0]

    assert adaptive_pool.axis_windows(100, 3).index.shape[1] <= adaptive_pool.LONG_WINDOW
    y_chain, dx_chain = jax.jit(value_and_vjp)()
    monkeypatch.setattr(adaptive_pool, "LONG_WINDOW", 0)
    y_table, dx_table = jax.jit(value_and_vjp)()
    np.testing.assert_array_equal(y_table, y_chain)
    np.testing.assert_array_equal(dx_table, dx_chain)
    # Output (1, 0) holds the NaNs at rows 40 and 50 and takes the first; (1, 1) the one at row 50.
    assert dx_table[0, 40, 2, 1] == g[0, 1, 0, 1] and dx_table[0, 50, 3, 1] == g[0, 1, 1, 1]
    assert np.isnan(y_table[1, :, :, 0]).any()


@pytest.mark.parametrize("mode", ["explicit", "shard_map"])
def test_sharded_gradients_equal_the_single_device_ones(mode):
    x = np.asarray(_unique((8, 7, 6, 2)))

    def loss(x):
        return jnp.sum(adaptive_max_pool(x, (3, 4)) ** 2) + jnp.sum(adaptive_avg_pool(x, (5, 9)) ** 2)

    reference = jax.grad(loss)(x)
    mesh = jax.make_mesh((4,), ("data",), axis_types=(AxisType.Explicit,))
    with jax.set_mesh(mesh):
        xs = jax.device_put(x, NamedSharding(mesh, P("data")))
        fun = jax.grad(loss)
        if mode == "shard_map":
            fun = jax.shard_map(fun, mesh=mesh, in_specs=P("data"), out_specs=P("data"))
        sharded = jax.jit(fun)(xs)
    np.testing.assert_allclose(np.asarray(sharded), reference, rtol=TOLERANCE, atol=TOLERANCE)


# --- errors -----------------------------------------------------------------------------


def _lit(*parts):
    """A regex for a message that starts with ``parts[0]`` and contains the later parts, in order."""
    return "^" + ".*".join(re.escape(part) for part in parts)


KIND = "a positive integer or 1, 2 or 3 entries each a positive integer or None"


@pytest.mark.parametrize(
    "output_size, match",
    [
        (0, _lit("adaptive_avg_pool: argument `output_size` must be a positive integer, got 0 (int)")),
        (-2, _lit("adaptive_avg_pool: argument `output_size` must be a positive integer, got -2 (int)")),
        (2.0, _lit(f"adaptive_avg_pool: argument `output_size` must be {KIND}, got 2.0 (float)")),
        (True, _lit(f"adaptive_avg_pool: argument `output_size` must be {KIND}, got True (bool)")),
        ("7", _lit(f"adaptive_avg_pool: argument `output_size` must be {KIND}, got '7' (str)")),
        (None, _lit(f"adaptive_avg_pool: argument `output_size` must be {KIND}, got None (NoneType)")),
        ((3, 0), _lit(f"adaptive_avg_pool: argument `output_size` must be {KIND}, got (3, 0)")),
        ((3, 2.5), _lit(f"adaptive_avg_pool: argument `output_size` must be {KIND}, got (3, 2.5)")),
        ([3, False], _lit(f"adaptive_avg_pool: argument `output_size` must be {KIND}, got (3, False)")),
        ((), _lit(f"adaptive_avg_pool: argument `output_size` must be {KIND}, got ()")),
        ((2, 2, 2, 2), _lit(f"adaptive_avg_pool: argument `output_size` must be {KIND}, got (2, 2, 2, 2)")),
    ],
)
def test_bad_output_sizes_are_refused(output_size, match):
    with pytest.raises(LayerConfigError, match=match):
        adaptive_avg_pool(jnp.ones((1, 4, 4, 1)), output_size)


def test_numpy_integers_and_arrays_are_output_sizes():
    x = _unique((1, 6, 4, 1))
    expected = adaptive_avg_pool(x, (3, 2))
    np.testing.assert_array_equal(adaptive_avg_pool(x, (np.int64(3), np.int32(2))), expected)
    np.testing.assert_array_equal(adaptive_avg_pool(x, np.array([3, 2])), expected)
    np.testing.assert_array_equal(adaptive_avg_pool(x, [3, 2]), expected)


@pytest.mark.parametrize(
    "op, x, output_size, match",
    [
        (adaptive_max_pool, jnp.ones((1, 4, 4, 1)), (2, 2, 2),
         "adaptive_max_pool: argument `output_size` has 3 entries (2, 2, 2) but the input has 2 spatial "
         "dimensions (input shape (1, 4, 4, 1))"),
        (adaptive_avg_pool, jnp.ones((1, 4, 1)), (2, None),
         "adaptive_avg_pool: argument `output_size` has 2 entries (2, None) but the input has 1 spatial "
         "dimensions (input shape (1, 4, 1))"),
        (adaptive_max_pool, jnp.ones((4, 4)), 2,
         "adaptive_max_pool: argument `x` must have rank 3, 4 or 5, but has shape (4, 4) (rank 2)"),
        (adaptive_avg_pool, jnp.ones((1, 2, 2, 2, 2, 1)), 1,
         "adaptive_avg_pool: argument `x` must have rank 3, 4 or 5, but has shape (1, 2, 2, 2, 2, 1) (rank 6)"),
        (adaptive_max_pool, jnp.ones((1, 0, 4, 1)), 2,
         "adaptive_max_pool: argument `x` has an empty spatial axis: shape (1, 0, 4, 1)"),
        (adaptive_avg_pool, jnp.ones((1, 4, 1), jnp.complex64), 2,
         "adaptive_avg_pool: argument `x` has complex dtype complex64"),
    ],
)  # fmt: skip
def test_inputs_that_do_not_fit_are_refused(op, x, output_size, match):
    with pytest.raises(LayerConfigError, match=_lit(match)):
        op(x, output_size)
    if x.dtype != jnp.complex64:
        with pytest.raises(LayerConfigError, match=_lit(match)):
            jax.jit(lambda x: op(x, output_size)).lower(jax.ShapeDtypeStruct(x.shape, jnp.float32))


def test_a_bad_grad_is_refused():
    with pytest.raises(LayerConfigError, match=r"^adaptive_max_pool: argument `grad` must be one of"):
        adaptive_max_pool(jnp.ones((1, 4, 1)), 2, grad="manual")
