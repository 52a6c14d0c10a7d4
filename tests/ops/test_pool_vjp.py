"""The hand-written pooling VJPs against JAX's autodiff (float64), and the max-pool tie rule."""

import functools
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax import lax
from jax.test_util import check_grads

from funcnn import checks, ops
from funcnn.ops import pool
from funcnn.ops.pool import max_unpool
from funcnn.testing import check_vjp
from tests.ops.test_pool import _naive_pool, _pairs

pytestmark = pytest.mark.usefixtures("x64")

TOLERANCE = 1e-12
SPATIAL = {1: (8,), 2: (8, 7), 3: (5, 4, 3)}
PADDINGS = {"VALID": "VALID", "SAME": "SAME", "explicit": ((1, 0), (0, 2), (2, 1))}


def _unique(shape, seed=0):
    """Distinct values (a shuffled, scaled ``arange``): no max-pool ties."""
    size = int(np.prod(shape))
    return jnp.asarray(np.random.default_rng(seed).permutation(size).reshape(shape) / size - 0.5)


def _cotangent(shape, seed=1, dtype=jnp.float64):
    return jax.random.normal(jax.random.key(seed), shape, dtype)


def _padding(name, rank):
    padding = PADDINGS[name]
    return padding if isinstance(padding, str) else padding[:rank]


def _config(x, window, strides, padding):
    """A resolved config for any padding, also past the public ops' rule (non-negative, at most half
    the window): the rules themselves handle every padding, and this checks them on all of it."""
    args = pool.PoolArgs(
        checks.sizes("test", "window", window),
        None if strides is None else checks.sizes("test", "strides", strides),
        checks.padding_spec("test", padding),
    )
    return pool.resolve_pool("test", args, x.shape)


def _max(x, window, strides, padding, grad):
    return pool.apply_max_pool(_config(x, window, strides, padding), x, grad)


POOLS = {
    "max": _max,
    "avg counting padding": lambda x, w, s, p, grad: pool.apply_avg_pool(_config(x, w, s, p), True, x, grad),
    "avg counting inputs": lambda x, w, s, p, grad: pool.apply_avg_pool(_config(x, w, s, p), False, x, grad),
}


@functools.partial(jax.jit, static_argnums=(2, 3, 4, 5))
def _vjps(x, g, window, strides, padding, grads=("custom", "autodiff")):
    """``dL/dX`` of every pool in ``POOLS``, by each of ``grads``; one compiled program."""
    return {
        (name, grad): jax.vjp(
            lambda x, pool=pool, grad=grad: pool(x, window, strides, padding, grad=grad), x
        )[1](g)[0]
        for name, pool in POOLS.items()
        for grad in grads
    }


def _assert_rules_match_autodiff(x, window, strides, padding):
    """Every pool's custom VJP equals its autodiff VJP to TOLERANCE."""
    g = _cotangent(_max(x, window, strides, padding, "custom").shape)
    vjps = _vjps(x, g, window, strides, padding)
    for name in POOLS:
        np.testing.assert_allclose(
            vjps[name, "custom"], vjps[name, "autodiff"], rtol=0, atol=TOLERANCE, err_msg=name
        )


def _grid():
    """Rank x window (1-3) x stride (1-3) x padding: 81 cases, of which an orthogonal array of
    nine, in which every pair of levels of any two factors meets once, runs by default; the
    rest are marked ``slow`` (compiling each case dominates the run time)."""
    ranks, paddings = (2, 1, 3), ("explicit", "SAME", "VALID")
    for r, w, s, p in itertools.product(range(3), repeat=4):
        orthogonal = s == (r + w) % 3 and p == (r + 2 * w) % 3
        marks = () if orthogonal else (pytest.mark.slow,)
        yield pytest.param(ranks[r], w + 1, s + 1, paddings[p], marks=marks)


@pytest.mark.parametrize("rank, window, stride, padding", list(_grid()))
def test_rules_match_autodiff_on_grid(rank, window, stride, padding):
    x = _unique((2, *SPATIAL[rank], 3))
    _assert_rules_match_autodiff(x, window, stride, _padding(padding, rank))


@settings(max_examples=6)
@given(rank=st.integers(1, 3), data=st.data())
def test_rules_match_autodiff_hypothesis(rank, data):
    spatial = tuple(data.draw(st.integers(1, 7)) for _ in range(rank))
    window = tuple(data.draw(st.integers(1, n + 1)) for n in spatial)
    strides = tuple(data.draw(st.integers(1, 3)) for _ in range(rank))
    padding = tuple((data.draw(st.integers(0, f - 1)), data.draw(st.integers(0, f - 1))) for f in window)
    if any(n + lo + hi < f for n, f, (lo, hi) in zip(spatial, window, padding)):
        padding = tuple((f - 1, f - 1) for f in window)
    x = _unique((data.draw(st.integers(1, 2)), *spatial, data.draw(st.integers(1, 2))), seed=rank)
    _assert_rules_match_autodiff(x, window, strides, padding)


def test_negative_padding_matches_cropped_reference():
    """Negative padding crops. JAX's autodiff of max pooling fails on it, so crop first there."""
    x = _unique((2, 9, 3))
    g = _cotangent(_max(x, 3, 2, ((-2, 1),), "custom").shape)
    custom = _vjps(x, g, 3, 2, ((-2, 1),), ("custom",))
    reference = _vjps(x[:, 2:], g, 3, 2, ((0, 1),), ("autodiff",))
    for name in POOLS:
        expected = jnp.zeros_like(x).at[:, 2:].set(reference[name, "autodiff"])
        np.testing.assert_allclose(custom[name, "custom"], expected, rtol=0, atol=TOLERANCE, err_msg=name)


# --- the tie rule and its edge cases ----------------------------------------------


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _max_pool_grad(x, window, strides=None, padding="VALID"):
    """dL/dX for L = sum(max_pool(x)) (a cotangent of ones)."""
    return jax.grad(lambda x: jnp.sum(ops.max_pool(x, window, strides, padding)))(x)


def test_tie_goes_to_the_first_element_of_each_tile():
    x = jnp.ones((1, 4, 4, 1))
    expected = np.array([[1, 0, 1, 0], [0, 0, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]], np.float64)
    np.testing.assert_array_equal(_max_pool_grad(x, 2)[0, :, :, 0], expected)


def test_dilated_tie_goes_to_the_first_element_by_either_rule():
    """Windows {0, 2}, {1, 3}, {2, 4}, {3, 5} of equal inputs: each gives its gradient to its first
    element, by the custom rule and by autodiff of the forward (which used to split it)."""
    x = jnp.ones((1, 6, 1))
    for grad in ("custom", "autodiff"):
        d_x = jax.grad(lambda x, grad=grad: jnp.sum(ops.max_pool(x, 2, 1, dilation=2, grad=grad)))(x)
        np.testing.assert_array_equal(d_x[0, :, 0], [1.0, 1.0, 1.0, 1.0, 0.0, 0.0], err_msg=grad)


def test_tie_goes_to_the_first_element_of_each_overlapping_window():
    x = jnp.ones((1, 3, 3, 1))
    # Four 2x2 windows at stride 1; each one's first element is its top-left corner.
    expected = np.array([[1, 1, 0], [1, 1, 0], [0, 0, 0]], np.float64)
    np.testing.assert_array_equal(_max_pool_grad(x, 2, 1)[0, :, :, 0], expected)


@pytest.mark.parametrize("strides", [3, 1], ids=["tiled", "overlapping"])
def test_row_major_scan_order_decides_between_equal_maxima(strides):
    """Maxima at (0, 2) and (1, 0): row-major order reaches (0, 2) first."""
    x = jnp.array([[0.0, 1.0, 5.0], [5.0, 2.0, 3.0], [4.0, 0.0, 5.0]])[None, :, :, None]
    expected = np.zeros((3, 3))
    expected[0, 2] = 1.0
    np.testing.assert_array_equal(_max_pool_grad(x, 3, strides)[0, :, :, 0], expected)


def test_overlapping_windows_accumulate_on_a_shared_maximum():
    x = jnp.array([0.0, 5.0, 1.0, 2.0, 7.0])[None, :, None]
    # Windows [0 5 1], [5 1 2], [1 2 7]: 5 wins twice, 7 once.
    np.testing.assert_array_equal(_max_pool_grad(x, 3, 1)[0, :, 0], [0.0, 2.0, 0.0, 0.0, 1.0])


def test_overlapping_ties_each_window_picks_its_own_first():
    x = jnp.full((1, 4, 1), 3.0)
    # Windows [0, 1], [1, 2], [2, 3] (stride 1): each gives its gradient to its first element.
    np.testing.assert_array_equal(_max_pool_grad(x, 2, 1)[0, :, 0], [1.0, 1.0, 1.0, 0.0])


def test_padding_never_wins_against_negative_inputs():
    x = -1.0 - _unique((2, 5, 5, 3)) ** 2
    grad = _max_pool_grad(x, 3, 2, "SAME")
    windows = ops.max_pool(x, 3, 2, "SAME").size
    assert float(jnp.sum(grad)) == windows


def test_padding_never_wins_even_against_minus_infinity():
    """JAX's autodiff lets padding win here and drops the gradient; the rule keeps it on an input."""
    x = jnp.full((1, 3, 1), -jnp.inf)
    grad = _max_pool_grad(x, 2, 2, ((1, 0),))
    # Windows (pad, x0) and (x1, x2).
    np.testing.assert_array_equal(grad[0, :, 0], [1.0, 1.0, 0.0])


@pytest.mark.parametrize("strides", [2, 1], ids=["tiled", "overlapping"])
def test_nan_window_gives_its_gradient_to_its_first_nan(strides):
    x = jnp.array([1.0, jnp.nan, jnp.nan, 3.0])[None, :, None]
    grad = _max_pool_grad(x, 2, strides)[0, :, 0]
    expected = [0.0, 1.0, 1.0, 0.0] if strides == 2 else [0.0, 2.0, 1.0, 0.0]
    np.testing.assert_array_equal(grad, expected)


# --- the two max-pool paths ---------------------------------------------------------


@pytest.mark.parametrize(
    "shape, window",
    [((2, 8, 6, 3), 2), ((2, 7, 5, 3), 2), ((2, 9, 3), 3), ((1, 4, 6, 5, 2), (2, 3, 1))],
    ids=["even", "cropped-tail", "1d-window3", "3d-mixed"],
)
def test_tiled_and_general_paths_agree(shape, window):
    x = _unique(shape)
    config = pool.resolve_pool("max_pool", pool.pool_args("max_pool", window), shape)
    assert pool.windows_tile_input(config)
    g = _cotangent(ops.max_pool(x, window).shape)
    tiled, general = _both_paths(config, x, g)
    np.testing.assert_array_equal(tiled, general)
    autodiff = _vjps(x, g, window, None, "VALID", ("autodiff",))["max", "autodiff"]
    np.testing.assert_array_equal(tiled, autodiff)


@settings(max_examples=25, deadline=None)
@given(
    rank=st.integers(1, 3),
    data=st.data(),
    values=st.sampled_from([(0.0, 1.0), (-np.inf, 0.0, 1.0), (np.nan, 0.0, 1.0), (-np.inf,)]),
)
def test_tiled_and_sliced_winners_agree_on_ties_nan_and_minus_infinity(rank, data, values):
    """The tiled winner (a reshape and one argmax) keeps the sliced form's tie rule: the first
    maximum in scan order, the first NaN of a NaN window, for inputs drawn from a few values."""
    window = tuple(data.draw(st.integers(1, 3)) for _ in range(rank))
    spatial = tuple(f * data.draw(st.integers(1, 3)) + data.draw(st.integers(0, f - 1)) for f in window)
    shape = (2, *spatial, 2)
    picks = data.draw(
        st.lists(st.integers(0, len(values) - 1), min_size=math.prod(shape), max_size=math.prod(shape))
    )
    x = jnp.asarray(np.asarray(values)[picks].reshape(shape))
    config = pool.resolve_pool("max_pool", pool.pool_args("max_pool", window), shape)
    assert pool.windows_tile_input(config)
    out_shape = ops.max_pool(x, window).shape
    np.testing.assert_array_equal(
        pool._first_max_offset_tiled(config, x, out_shape),
        pool._first_max_offset_sliced(config, x, out_shape),
    )


def test_a_global_max_pool_gradient_takes_the_same_operations_for_any_image_size():
    """The tiled winner is one reshape and one argmax, however large the window: a global max pool's
    window is the whole image (the sliced form has one slice per offset; 16x16 took 45 s to compile)."""

    def equations(side):
        x = jnp.ones((2, side, side, 3))
        return len(jax.make_jaxpr(jax.grad(lambda x: ops.max_pool(x, side).sum()))(x).eqns)

    assert equations(2) == equations(32)


@functools.partial(jax.jit, static_argnums=0)
def _both_paths(config, x, g):
    winner = pool.first_max_offset(config, x, g.shape)
    return tuple(
        to_winners(config, winner, g, x.shape)
        for to_winners in (pool._to_winners_tiled, pool._to_winners_general)
    )


@pytest.mark.parametrize(
    "window, strides, padding", [(2, 1, "VALID"), (2, 2, "SAME"), (2, 2, ((1, 0), (0, 0))), (3, 2, "VALID")]
)
def test_overlap_or_padding_takes_the_general_path(window, strides, padding):
    config = pool.resolve_pool("max_pool", pool.pool_args("max_pool", window, strides, padding), (1, 5, 6, 1))
    assert not pool.windows_tile_input(config)


# --- second order, transformations, dtypes --------------------------------------------


@pytest.mark.parametrize("count_include_pad", [True, False])
def test_avg_pool_second_order(count_include_pad):
    x = _unique((2, 5, 4, 2))
    check_grads(
        lambda x: ops.avg_pool(x, 3, 2, "SAME", count_include_pad=count_include_pad),
        (x,),
        order=2,
        modes=["rev"],
    )


@pytest.mark.parametrize("strides", [2, 1], ids=["tiled", "overlapping"])
def test_max_pool_second_order(strides):
    x = _unique((2, 6, 5, 2))
    check_grads(lambda x: ops.max_pool(x, 2, strides, "SAME"), (x,), order=2, modes=["rev"], eps=1e-4)


def test_grad_of_grad_is_zero_in_the_input_and_linear_in_the_cotangent():
    x = _unique((1, 4, 4, 1))
    hessian_vector = jax.grad(lambda x: jnp.sum(_max_pool_grad(x, 2) * x))(x)
    np.testing.assert_array_equal(hessian_vector, _max_pool_grad(x, 2))


def test_composes_with_vmap_jit_and_scan():
    xs = _unique((3, 2, 6, 6, 2))

    def loss(x):
        return jnp.sum(ops.max_pool(x, 2) ** 2) + jnp.sum(ops.avg_pool(x, 3, 1, "SAME") ** 2)

    def loss_autodiff(x):
        return jnp.sum(ops.max_pool(x, 2, grad="autodiff") ** 2) + jnp.sum(
            ops.avg_pool(x, 3, 1, "SAME", grad="autodiff") ** 2
        )

    expected = jnp.stack([jax.grad(loss_autodiff)(x) for x in xs])
    np.testing.assert_allclose(jax.vmap(jax.grad(loss))(xs), expected, rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(jax.jit(jax.vmap(jax.grad(loss)))(xs), expected, rtol=0, atol=TOLERANCE)

    def body(total, x):
        return total + loss(x), jax.grad(loss)(x)

    _, scanned = lax.scan(body, jnp.zeros(()), xs)
    np.testing.assert_allclose(scanned, expected, rtol=0, atol=TOLERANCE)


def test_vmap_over_the_channel_axis():
    """Channels pool independently, so vmapping over them matches pooling them all at once."""
    x = _unique((2, 6, 4, 3))

    def loss(x_channel):
        return jnp.sum(ops.max_pool(x_channel[..., None], 2, 1) ** 2)

    per_channel = jax.jit(jax.vmap(jax.grad(loss), in_axes=3, out_axes=3))(x)
    expected = jax.grad(lambda x: jnp.sum(ops.max_pool(x, 2, 1, grad="autodiff") ** 2))(x)
    np.testing.assert_allclose(per_channel, expected, rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("strides", [2, 1], ids=["tiled", "overlapping"])
def test_cotangents_keep_the_primal_dtype(dtype, strides):
    x = _unique((2, 6, 6, 3)).astype(dtype)
    for fn in (
        lambda x: ops.max_pool(x, 2, strides, "SAME"),
        lambda x: ops.avg_pool(x, 2, strides, "SAME", count_include_pad=False),
    ):
        g = jnp.ones(jax.eval_shape(fn, x).shape, dtype)
        assert jax.eval_shape(lambda x, g, fn=fn: jax.vjp(fn, x)[1](g)[0], x, g).dtype == dtype


def test_zero_size_batch():
    x = jnp.zeros((0, 6, 6, 2))
    assert _max_pool_grad(x, 2).shape == x.shape
    assert jax.grad(lambda x: jnp.sum(ops.avg_pool(x, 3, 1, "SAME")))(x).shape == x.shape


def test_default_grid_covers_both_paths():
    """The default grid sends a real tiling (window > 1) to the fast path, and others to the general one."""
    paths = set()
    for param in _grid():
        rank, window, stride, padding = param.values
        if not param.marks:
            config = _config(jnp.zeros((2, *SPATIAL[rank], 3)), window, stride, _padding(padding, rank))
            paths.add((pool.windows_tile_input(config), window > 1))
    assert {(True, True), (False, True)} <= paths


# --- ceil mode, dilation, unpooling ---------------------------------------------------


def _check_rule(custom, reference, *args):
    """``check_vjp`` of the custom rule against autodiff, each side one compiled program."""
    check_vjp(jax.jit(custom), *args, reference=jax.jit(reference), rtol=TOLERANCE, atol=TOLERANCE)


@pytest.mark.parametrize(
    "spatial, window, strides, padding",
    [
        ((7,), 2, 2, 0),
        ((8,), 3, 2, 1),
        ((7, 6), 3, 2, 1),
        ((6, 7), (2, 3), (3, 2), ((1, 0), (1, 1))),
        ((5, 4, 6), 2, 2, 1),
        ((4, 5, 3), (3, 2, 2), 2, 0),
    ],
)
def test_ceil_mode_rules_match_autodiff(spatial, window, strides, padding):
    x = _unique((2, *spatial, 2))
    _check_rule(
        lambda x: ops.max_pool(x, window, strides, padding, ceil_mode=True),
        lambda x: ops.max_pool(x, window, strides, padding, ceil_mode=True, grad="autodiff"),
        x,
    )
    for count_include_pad in (True, False):
        _check_rule(
            lambda x, c=count_include_pad: ops.avg_pool(
                x, window, strides, padding, ceil_mode=True, count_include_pad=c
            ),
            lambda x, c=count_include_pad: ops.avg_pool(
                x, window, strides, padding, ceil_mode=True, count_include_pad=c, grad="autodiff"
            ),
            x,
        )


DILATED = [
    ((9,), 3, 1, 0, 2, False),
    ((10,), 2, 3, 1, 3, True),
    ((8, 7), 3, (1, 2), 1, (2, 1), False),
    ((7, 8), 2, 2, 1, 2, True),
    ((5, 6, 5), 2, 1, ((1, 0), (0, 1), (1, 1)), (2, 3, 1), False),
]


@pytest.mark.parametrize("spatial, window, strides, padding, dilation, ceil_mode", DILATED)
def test_dilated_max_pool_rule_matches_autodiff(spatial, window, strides, padding, dilation, ceil_mode):
    kwargs = {"dilation": dilation, "ceil_mode": ceil_mode}
    _check_rule(
        lambda x: ops.max_pool(x, window, strides, padding, **kwargs),
        lambda x: ops.max_pool(x, window, strides, padding, **kwargs, grad="autodiff"),
        _unique((2, *spatial, 2)),
    )


@pytest.mark.parametrize("spatial, window, strides, padding, dilation, ceil_mode", DILATED)
def test_dilated_ties_go_to_the_first_maximum_in_scan_order(
    spatial, window, strides, padding, dilation, ceil_mode
):
    """Inputs from {0, 1} tie everywhere; each window's cotangent goes to its first maximal input,
    as the naive reference's winner index says, by the custom rule and by autodiff alike (the
    autodiff form reads each window at its first maximum)."""
    x = jax.random.bernoulli(jax.random.key(7), 0.5, (2, *spatial, 2)).astype(jnp.float64)
    pool = functools.partial(
        ops.max_pool, window=window, strides=strides, padding=padding, dilation=dilation, ceil_mode=ceil_mode
    )
    rank = len(spatial)
    _, winners = _naive_pool(
        x,
        checks.broadcast("t", "w", window, rank),
        checks.broadcast("t", "s", strides, rank),
        _pairs(padding, rank),
        checks.broadcast("t", "d", dilation, rank),
        ceil_mode,
        "max",
    )
    g = _cotangent(winners.shape)
    grad = jax.jit(lambda x, g: jax.vjp(pool, x)[1](g)[0])(x, g)
    autodiff = jax.jit(lambda x, g: jax.vjp(functools.partial(pool, grad="autodiff"), x)[1](g)[0])(x, g)
    np.testing.assert_array_equal(pool(x, grad="autodiff"), pool(x))
    np.testing.assert_allclose(grad, autodiff, rtol=0, atol=TOLERANCE)
    expected = np.zeros((2, math.prod(spatial), 2))
    flat_w, flat_g = winners.reshape(2, -1, 2), np.asarray(g).reshape(2, -1, 2)
    for n, c in itertools.product(range(2), range(2)):
        expected[n, :, c] = np.bincount(flat_w[n, :, c], flat_g[n, :, c], minlength=math.prod(spatial))
    np.testing.assert_allclose(grad, expected.reshape(x.shape), rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize(
    "spatial, window, strides",
    [((9,), 3, 3), ((8, 6), 2, 2), ((6, 7), (3, 2), (3, 2)), ((4, 6, 4), 2, 2), ((7,), 2, 3)],
)
def test_unpool_rule_matches_autodiff(spatial, window, strides):
    """Non-overlapping windows: every index is distinct, where the gather rule and autodiff of the
    scatter agree."""
    x = _unique((2, *spatial, 3))
    y, indices = jax.jit(lambda x: ops.max_pool(x, window, strides, return_indices=True))(x)
    values = _cotangent(y.shape, seed=4)
    _check_rule(
        lambda v: max_unpool(v, indices, window, strides, output_size=spatial),
        lambda v: max_unpool(v, indices, window, strides, output_size=spatial, grad="autodiff"),
        values,
    )


def test_unpool_rule_gathers_for_every_copy_of_a_shared_index():
    """Overlapping windows that share a winner write one place; each copy's cotangent is the
    cotangent there (PyTorch's rule; autodiff of the scatter gives it to one copy only)."""
    x = jnp.array([0.0, 5.0, 1.0, 2.0, 7.0])[None, :, None]
    y, indices = ops.max_pool(x, 3, 1, return_indices=True)  # windows [0 5 1] [5 1 2] [1 2 7]
    np.testing.assert_array_equal(indices[0, :, 0], [1, 1, 4])
    g = jnp.arange(1.0, 6.0)[None, :, None]
    dy = jax.vjp(lambda y: max_unpool(y, indices, 3, 1, output_size=5), y)[1](g)[0]
    np.testing.assert_array_equal(dy[0, :, 0], [2.0, 2.0, 5.0])
    assert jax.grad(lambda y: jnp.sum(max_unpool(y, indices, 3, 1, output_size=5)))(y).shape == y.shape


def test_indices_are_integers_outside_differentiation():
    x = _unique((1, 4, 4, 1))
    y, indices = jax.jit(lambda x: ops.max_pool(x, 2, return_indices=True))(x)
    grad = jax.grad(lambda x: jnp.sum(ops.max_pool(x, 2, return_indices=True)[0]))(x)
    np.testing.assert_array_equal(grad, _max_pool_grad(x, 2))
    assert indices.dtype == jnp.int32


def test_unpool_and_indices_compose_with_vmap():
    xs = _unique((3, 2, 6, 4, 2))

    def round_trip(x):
        return max_unpool(*ops.max_pool(x, 2, return_indices=True), 2)

    looped = jnp.stack([jax.jit(round_trip)(x) for x in xs])
    np.testing.assert_array_equal(jax.jit(jax.vmap(round_trip))(xs), looped)
    grads = jax.jit(jax.vmap(jax.grad(lambda x: jnp.sum(round_trip(x) ** 2))))(xs)
    np.testing.assert_allclose(grads, 2 * looped, rtol=0, atol=TOLERANCE)
