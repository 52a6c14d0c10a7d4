"""``BatchNorm``, ``LayerNorm``, ``RMSNorm``, ``GroupNorm``, ``InstanceNorm``: values, params over chosen
axes, state checks, batch-size rules, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcnn as fn
from funcnn.core import LayerConfigError
from funcnn.layers.norm import GroupNorm, InstanceNorm, LayerNorm, RMSNorm
from tests.layers.test_shape_agreement import check_shape_agreement

KEY = jax.random.key(0)


def test_batchnorm_normalises_with_batch_statistics_in_training():
    layer = fn.BatchNorm(momentum=0.9)
    _, params, state = layer.init(KEY, (-1, 4, 4, 3))
    x = 3.0 + 2.0 * jax.random.normal(jax.random.key(1), (8, 4, 4, 3))
    y, new_state = layer.apply(params, state, x, train=True)
    np.testing.assert_allclose(jnp.mean(y, axis=(0, 1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(jnp.std(y, axis=(0, 1, 2)), 1.0, atol=1e-3)
    np.testing.assert_allclose(new_state.mean, 0.1 * jnp.mean(x, axis=(0, 1, 2)), rtol=1e-5)
    assert isinstance(new_state, fn.BatchNormState)


def test_layernorm_and_groupnorm_normalise_per_example():
    x = 5.0 + 3.0 * jax.random.normal(KEY, (2, 4, 4, 6))
    _, params, _ = fn.LayerNorm().init(KEY, x.shape)
    y, _ = fn.LayerNorm().apply(params, (), x)
    np.testing.assert_allclose(jnp.mean(y, axis=-1), 0.0, atol=1e-5)
    _, params, _ = fn.GroupNorm(3).init(KEY, x.shape)
    y, _ = fn.GroupNorm(3).apply(params, (), x)
    grouped = y.reshape(2, 4, 4, 3, 2)
    np.testing.assert_allclose(jnp.mean(grouped, axis=(1, 2, 4)), 0.0, atol=1e-5)
    np.testing.assert_allclose(jnp.var(grouped, axis=(1, 2, 4)), 1.0, atol=1e-3)


@pytest.mark.parametrize("batch, count", [((0, 4), 0), ((1, 4), 1), ((1, 1, 1, 4), 1)])
def test_batchnorm_training_needs_two_values_per_channel(batch, count):
    layer = fn.BatchNorm()
    _, params, state = layer.init(KEY, (-1, *batch[1:]))
    with pytest.raises(
        fn.LayerConfigError,
        match=rf"BatchNorm: argument `x` of shape \({', '.join(map(str, batch))},?\) has {count} value\(s\) per channel",
    ):
        layer.apply(params, state, jnp.ones(batch), train=True)
    y, same = layer.apply(params, state, jnp.ones(batch))  # evaluation uses the running statistics
    assert y.shape == batch and same is state


def test_batchnorm_state_is_checked():
    layer = fn.BatchNorm()
    _, params, state = layer.init(KEY, (-1, 4))
    with pytest.raises(fn.LayerConfigError, match=r"BatchNorm: argument `state` must be the BatchNormState"):
        layer.apply(params, (), jnp.ones((2, 4)), train=True)
    bad = fn.BatchNormState(state.mean, jnp.ones(5))
    with pytest.raises(fn.LayerConfigError, match=r"BatchNorm: argument `state` leaf 'var' has shape \(5,\)"):
        layer.apply(params, bad, jnp.ones((2, 4)))


def test_batchnorm_of_integers_updates_float_statistics():
    layer = fn.BatchNorm(momentum=0.5)
    _, params, state = layer.init(KEY, (-1, 2))
    y, new_state = layer.apply(params, state, jnp.array([[0, 2], [2, 4]], jnp.uint8), train=True)
    assert y.dtype == jnp.float32
    np.testing.assert_allclose(new_state.mean, [0.5, 1.5])


def _bn_batch():
    return np.random.default_rng(1).normal(2.0, 3.0, size=(8, 4, 4, 3)).astype(np.float32)


def test_batchnorm_of_a_sharded_batch_uses_the_global_statistics():
    """Under jit with the batch split over four devices, XLA reduces across them."""
    from funcnn import distributed

    layer = fn.BatchNorm(momentum=0.5)
    x = _bn_batch()
    _, params, state = layer.init(jax.random.key(0), x.shape)
    apply = jax.jit(lambda p, s, x: layer.apply(p, s, x, train=True))
    want_y, want_state = apply(params, state, x)
    mesh = distributed.data_mesh()
    got_y, got_state = apply(
        distributed.replicate(mesh, params),
        distributed.replicate(mesh, state),
        distributed.shard_batch(mesh, x),
    )
    np.testing.assert_allclose(np.asarray(got_y), np.asarray(want_y), rtol=1e-5, atol=1e-5)
    for got, want in zip(got_state, want_state, strict=True):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5)


def test_batchnorm_axis_name_inside_shard_map_uses_the_global_statistics():
    from jax.sharding import PartitionSpec as P

    from funcnn import distributed

    x = _bn_batch()
    plain, synced = fn.BatchNorm(momentum=0.5), fn.BatchNorm(momentum=0.5, axis_name="data")
    _, params, state = plain.init(jax.random.key(0), x.shape)
    want_y, want_state = plain.apply(params, state, x, train=True)
    mesh = distributed.data_mesh()

    def per_device(params, state, x):
        y, new_state = synced.apply(params, state, x, train=True)
        return y, jax.tree.map(lambda s: s[None], new_state)  # one copy per device, to compare them

    got_y, got_state = jax.jit(
        jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P(), P("data")), out_specs=(P("data"), P("data")))
    )(params, state, x)
    np.testing.assert_allclose(np.asarray(got_y), np.asarray(want_y), rtol=1e-5, atol=1e-5)
    for got, want in zip(got_state, want_state, strict=True):
        got = np.asarray(got)
        assert got.shape == (4, 3)
        np.testing.assert_array_equal(got, np.broadcast_to(got[0], got.shape))  # identical on every device
        np.testing.assert_allclose(got[0], np.asarray(want), rtol=1e-5)
    # without axis_name each device normalises with its own rows' statistics
    alone = jax.jit(jax.shard_map(lambda p, s, x: plain.apply(p, s, x, train=True)[0], mesh=mesh,
                                  in_specs=(P(), P(), P("data")), out_specs=P("data")))(params, state, x)  # fmt: skip
    assert not np.allclose(np.asarray(alone), np.asarray(want_y), atol=1e-3)


def test_batchnorm_axis_name_counts_the_rows_of_every_device():
    """One row per device is four values per channel over the mesh: enough for statistics."""
    from jax.sharding import PartitionSpec as P

    from funcnn import distributed

    x = np.random.default_rng(2).normal(size=(4, 3)).astype(np.float32)
    synced = fn.BatchNorm(axis_name="data")
    _, params, state = synced.init(jax.random.key(0), x.shape)
    per_device = jax.shard_map(
        lambda p, s, x: synced.apply(p, s, x, train=True)[0],
        mesh=distributed.data_mesh(),
        in_specs=(P(), P(), P("data")),
        out_specs=P("data"),
    )
    want = (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-5)
    np.testing.assert_allclose(np.asarray(jax.jit(per_device)(params, state, x)), want, rtol=1e-4, atol=1e-5)


def test_batchnorm_axis_name_is_checked():
    with pytest.raises(
        fn.LayerConfigError, match=r"BatchNorm: argument `axis_name` must be None, a mesh axis name"
    ):
        fn.BatchNorm(axis_name=3)
    with pytest.raises(fn.LayerConfigError, match=r"BatchNorm: argument `axis_name` must be None"):
        fn.BatchNorm(axis_name=())
    layer = fn.BatchNorm(axis_name="data")
    x = _bn_batch()
    _, params, state = layer.init(jax.random.key(0), x.shape)
    with pytest.raises(
        fn.LayerConfigError, match=r"BatchNorm: argument `axis_name` 'data' is not a bound axis here"
    ):
        layer.apply(params, state, x, train=True)
    y, same = layer.apply(params, state, x, train=False)  # evaluation uses the running statistics only
    assert same is state and y.shape == x.shape


def test_batchnorm_in_bfloat16_keeps_float32_statistics():
    layer = fn.BatchNorm(momentum=0.0, dtype=jnp.bfloat16)
    x = _bn_batch() + 20.0  # a mean well above the spread: bfloat16 sums would lose the variance
    _, params, state = layer.init(jax.random.key(0), x.shape)
    y, new_state = layer.apply(params, state, x, train=True)
    assert y.dtype == jnp.bfloat16 and new_state.mean.dtype == new_state.var.dtype == jnp.float32
    rounded = np.asarray(jnp.asarray(x, jnp.bfloat16), np.float64).reshape(-1, 3)  # what the layer sees
    np.testing.assert_allclose(np.asarray(new_state.mean), rounded.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(new_state.var), rounded.var(axis=0), rtol=1e-4)


# --- LayerNorm over chosen axes, RMSNorm, InstanceNorm --------------------------------------------


def _images(shape=(3, 5, 4, 6), seed=1):
    return 2.0 + 3.0 * jax.random.normal(jax.random.key(seed), shape)


def _random_params(params, seed=2):
    """Params away from their initial ones and zeros, so a misplaced scale or bias shows."""
    keys = jax.random.split(jax.random.key(seed), len(params))
    return {
        name: 1.0 + 0.5 * jax.random.normal(k, v.shape) for k, (name, v) in zip(keys, sorted(params.items()))
    }


@pytest.mark.parametrize(
    "axis, param_shape",
    [(-1, (6,)), (3, (6,)), ((1, 2, 3), (5, 4, 6)), ((3, 1), (5, 6)), (-2, (4,)), ((-3, -2), (5, 4))],
)
def test_layernorm_params_have_the_shape_of_x_along_the_axes_in_order(axis, param_shape):
    x = _images()
    out_shape, params, state = LayerNorm(axis=axis).init(KEY, (-1, *x.shape[1:]))
    assert out_shape == (-1, *x.shape[1:]) and state == ()
    assert {k: v.shape for k, v in params.items()} == {"scale": param_shape, "bias": param_shape}


@pytest.mark.parametrize(
    "axis, axes", [((1, 2, 3), (1, 2, 3)), ((3, 1), (1, 3)), (-2, (2,)), ((1, 2), (1, 2))]
)
def test_layernorm_normalises_over_the_axes_then_scales_and_shifts(axis, axes):
    x = _images()
    layer = LayerNorm(axis=axis)
    _, params, _ = layer.init(KEY, x.shape)
    params = _random_params(params)
    y, _ = layer.apply(params, (), x)
    mean = jnp.mean(x, axis=axes, keepdims=True)
    var = jnp.var(x, axis=axes, keepdims=True)
    placed = [jax.lax.broadcast_in_dim(params[name], x.shape, axes) for name in ("scale", "bias")]
    np.testing.assert_allclose(
        y, (x - mean) / jnp.sqrt(var + 1e-5) * placed[0] + placed[1], rtol=1e-5, atol=1e-5
    )


def test_layernorm_default_is_the_last_axis_with_per_channel_params():
    x = _images()
    default, explicit = LayerNorm(), LayerNorm(axis=-1)
    _, params, _ = default.init(KEY, x.shape)
    assert params["scale"].shape == (6,)
    params = _random_params(params)
    np.testing.assert_array_equal(default.apply(params, (), x)[0], explicit.apply(params, (), x)[0])
    np.testing.assert_array_equal(default.apply(params, (), x)[0], LayerNorm(axis=3).apply(params, (), x)[0])


def test_rmsnorm_divides_by_the_root_mean_square_and_scales():
    x = _images()
    for axis, axes in [(-1, (3,)), ((1, 2, 3), (1, 2, 3))]:
        layer = RMSNorm(axis=axis, epsilon=1e-3)
        _, params, _ = layer.init(KEY, x.shape)
        assert set(params) == {"scale"}
        params = _random_params(params)
        y, _ = layer.apply(params, (), x)
        scale = jax.lax.broadcast_in_dim(params["scale"], x.shape, axes)
        want = x / jnp.sqrt(jnp.mean(x**2, axis=axes, keepdims=True) + 1e-3) * scale
        np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-6)


def test_rmsnorm_without_scale_has_no_params():
    layer = RMSNorm(use_scale=False)
    _, params, _ = layer.init(KEY, (-1, 4))
    assert params == {}
    y, _ = layer.apply(params, (), jnp.array([[3.0, -3.0, 3.0, -3.0]]))
    np.testing.assert_allclose(y, [[1.0, -1.0, 1.0, -1.0]], rtol=1e-5)


@pytest.mark.parametrize("shape", [(2, 7, 3), (2, 5, 4, 3), (2, 4, 3, 3, 2)])
def test_instancenorm_is_groupnorm_with_one_channel_per_group(shape):
    x = _images(shape)
    _, params, _ = InstanceNorm().init(KEY, shape)
    params = _random_params(params)
    y, _ = InstanceNorm().apply(params, (), x)
    np.testing.assert_array_equal(y, GroupNorm(shape[-1]).apply(params, (), x)[0])
    spatial = tuple(range(1, len(shape) - 1))
    normed = (y - jax.lax.broadcast_to_rank(params["bias"], y.ndim)) / jax.lax.broadcast_to_rank(
        params["scale"], y.ndim
    )
    np.testing.assert_allclose(jnp.mean(normed, axis=spatial), 0.0, atol=1e-5)
    np.testing.assert_allclose(jnp.var(normed, axis=spatial), 1.0, atol=1e-3)


@pytest.mark.parametrize(
    "layer_fn, shape",
    [
        (lambda grad: LayerNorm(grad=grad), (2, 5, 4, 6)),
        (lambda grad: LayerNorm(axis=(1, 3), grad=grad), (2, 5, 4, 6)),
        (lambda grad: RMSNorm(axis=(-2, -1), grad=grad), (2, 5, 6)),
        (lambda grad: GroupNorm(3, grad=grad), (2, 5, 4, 6)),
        (lambda grad: InstanceNorm(grad=grad), (2, 5, 6)),
    ],
)
def test_hand_written_and_autodiff_gradients_agree_through_the_layers(layer_fn, shape):
    """float32 here; the rule is checked to 1e-12 in float64 in tests/ops/test_norm.py."""
    x = _images(shape)
    custom, autodiff = layer_fn("custom"), layer_fn("autodiff")
    _, params, _ = custom.init(KEY, shape)
    params = _random_params(params)
    cotangent = jax.random.normal(jax.random.key(5), shape)

    def gradients(layer):
        return jax.grad(lambda p, x: jnp.sum(layer.apply(p, (), x)[0] * cotangent), argnums=(0, 1))(params, x)

    for got, want in zip(
        jax.tree.leaves(gradients(custom)), jax.tree.leaves(gradients(autodiff)), strict=True
    ):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "layer_fn", [lambda: LayerNorm(axis=(1, 2, 3)), lambda: RMSNorm(), lambda: InstanceNorm()]
)
def test_bfloat16_input_keeps_float32_statistics(layer_fn):
    """A mean far above the spread: bfloat16 sums would lose the variance."""
    layer = layer_fn()
    x = (100.0 + jax.random.normal(KEY, (2, 4, 4, 8))).astype(jnp.bfloat16)
    _, params, _ = layer.init(KEY, x.shape)
    y, _ = layer.apply(params, (), x)
    want, _ = layer.apply(params, (), x.astype(jnp.float32))
    assert y.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(y, np.float32), np.asarray(want), atol=0.05)


@pytest.mark.parametrize(
    "layer_fn, shape",
    [
        (lambda: LayerNorm(axis=(1, 2, 3)), (-1, 5, 4, 3)),
        (lambda: LayerNorm(axis=(-3, -1)), (-1, 7, 2, 3)),
        (lambda: RMSNorm(), (-1, 4)),
        (lambda: RMSNorm(axis=(1, 2)), (-1, 5, 4, 3)),
        (lambda: InstanceNorm(), (-1, 9, 2)),
        (lambda: InstanceNorm(), (-1, 5, 4, 3)),
        (lambda: InstanceNorm(), (-1, 3, 4, 2, 3)),
    ],
)
def test_new_norm_shape_agreement(layer_fn, shape):
    assert check_shape_agreement(layer_fn(), shape) == shape


def test_summary_counts_the_feature_shaped_params():
    table = fn.shapes.summary(LayerNorm(axis=(1, 2, 3)), (-1, 5, 4, 3))
    assert "120" in str(table)  # scale and bias of shape (5, 4, 3)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: LayerNorm(axis=1.0), r"LayerNorm: argument `axis` must be an integer or a tuple of integers, got 1.0 \(float\)"),
        (lambda: LayerNorm(axis=(1, 2.0)), r"LayerNorm: argument `axis` must be an integer or a tuple of integers, got \(1, 2.0\) \(tuple\)"),
        (lambda: LayerNorm(axis=True), r"LayerNorm: argument `axis` must be an integer or a tuple of integers, got True \(bool\)"),
        (lambda: LayerNorm(axis=()), r"LayerNorm: argument `axis` must be an integer or a tuple of integers, got \(\) \(tuple\)"),
        (lambda: LayerNorm(axis=(1, 1)), r"LayerNorm: argument `axis` must not repeat an axis, got \(1, 1\)"),
        (lambda: LayerNorm(axis=0), r"LayerNorm: argument `axis` must not include the batch axis 0 \(the statistics are per example\), got 0"),
        (lambda: LayerNorm(axis=(0, 1)), r"LayerNorm: argument `axis` must not include the batch axis 0 .*got \(0, 1\)"),
        (lambda: LayerNorm(grad="exact"), r"LayerNorm: argument `grad` must be one of \('custom', 'custom_vjp', 'autodiff'\), got 'exact'"),
        (lambda: RMSNorm(axis="last"), r"RMSNorm: argument `axis` must be an integer or a tuple of integers, got 'last' \(str\)"),
        (lambda: RMSNorm(epsilon=0.0), r"RMSNorm: argument `epsilon` must be > 0, got 0.0"),
        (lambda: RMSNorm(use_scale="yes"), r"RMSNorm: argument `use_scale` must be True or False, got 'yes' \(str\)"),
        (lambda: RMSNorm(scale_init=1.0), r"RMSNorm: argument `scale_init` must be an initializer"),
        (lambda: InstanceNorm(epsilon=-1.0), r"InstanceNorm: argument `epsilon` must be > 0, got -1.0"),
        (lambda: InstanceNorm(use_bias=None), r"InstanceNorm: argument `use_bias` must be True or False, got None \(NoneType\)"),
        (lambda: InstanceNorm(grad=False), r"InstanceNorm: argument `grad` must be one of \('custom', 'custom_vjp', 'autodiff'\), got False"),
        (lambda: GroupNorm(2, grad="fast"), r"GroupNorm: argument `grad` must be one of \('custom', 'custom_vjp', 'autodiff'\), got 'fast'"),
        # init: the axes against the input's rank
        (lambda: LayerNorm(axis=(1, 4)).init(KEY, (-1, 4, 4, 3)), r"LayerNorm: argument `axis`=\(1, 4\) is out of range \(or repeated\) for an input of shape \(-1, 4, 4, 3\)"),
        (lambda: LayerNorm(axis=(1, -3)).init(KEY, (-1, 4, 4, 3)), r"LayerNorm: argument `axis`=\(1, -3\) is out of range \(or repeated\) for an input of shape \(-1, 4, 4, 3\)"),
        (lambda: LayerNorm(axis=-4).init(KEY, (-1, 4, 4, 3)), r"LayerNorm: argument `axis`=-4 includes the batch axis 0 of an input of shape \(-1, 4, 4, 3\); the statistics are per example"),
        (lambda: RMSNorm(axis=2).init(KEY, (-1, 4)), r"RMSNorm: argument `axis`=2 is out of range \(or repeated\) for an input of shape \(-1, 4\)"),
        (lambda: RMSNorm().init(KEY, (4,)), r"RMSNorm: argument `x` must have rank 2, 3, 4, 5 or 6, but has shape \(4,\) \(rank 1\)"),
        (lambda: InstanceNorm().init(KEY, (-1, 4)), r"InstanceNorm: argument `x` must have rank 3, 4, 5 or 6, but has shape \(-1, 4\) \(rank 2\)"),
        (lambda: InstanceNorm().init(KEY, (-1, 1, 1, 3)), r"InstanceNorm: argument `x` of shape \(-1, 1, 1, 3\) has 1 spatial value\(s\) per channel; instance statistics need at least 2"),
    ],
)  # fmt: skip
def test_new_norm_arguments_are_checked(call, match):
    with pytest.raises(LayerConfigError, match=match):
        call()


def _applied(layer, init_shape, x, params=None):
    _, p, s = layer.init(KEY, init_shape)
    return layer.apply(p if params is None else params(p), s, x)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: _applied(LayerNorm(axis=(1, 2, 3)), (-1, 4, 4, 3), jnp.ones((2, 5, 5, 3))), r"LayerNorm: argument `x` has shape \(5, 5, 3\) along the normalised axes \(1, 2, 3\) \(x.shape=\(2, 5, 5, 3\)\) but the layer was initialised for \(4, 4, 3\) \(`scale` has shape \(4, 4, 3\)\)"),
        (lambda: _applied(LayerNorm(axis=(1, 2, 3)), (-1, 4, 4, 3), jnp.ones((2, 4, 3))), r"LayerNorm: argument `axis`=\(1, 2, 3\) is out of range \(or repeated\) for an input of shape \(2, 4, 3\)"),
        (lambda: _applied(LayerNorm(axis=-3), (-1, 5, 4, 3), jnp.ones((2, 4, 3))), r"LayerNorm: argument `axis`=-3 includes the batch axis 0 of an input of shape \(2, 4, 3\)"),
        (lambda: _applied(LayerNorm(use_bias=False, axis=(1, 2)), (-1, 4, 3), jnp.ones((2, 4, 3)), params=lambda p: {"scale": jnp.ones(3)}), r"LayerNorm: argument `x` has shape \(4, 3\) along the normalised axes \(1, 2\) \(x.shape=\(2, 4, 3\)\) but the layer was initialised for \(3,\)"),
        (lambda: _applied(LayerNorm(axis=(1, 2)), (-1, 4, 3), jnp.ones((2, 4, 3)), params=lambda p: {"scale": p["scale"]}), r"LayerNorm: argument `params` has no leaf 'bias' \(init builds shape \(4, 3\) for an input of shape \(2, 4, 3\)\)"),
        (lambda: _applied(RMSNorm(), (-1, 4), jnp.ones((2, 6))), r"RMSNorm: argument `x` has 6 channels \(x.shape=\(2, 6\)\) but the layer was initialised for 4 \(`scale` has shape \(4,\)\)"),
        (lambda: _applied(RMSNorm(), (-1, 4), jnp.ones((2, 4)), params=lambda p: {**p, "bias": jnp.zeros(4)}), r"RMSNorm: argument `params` has unexpected leaves \['bias'\]; init builds \['scale'\]"),
        (lambda: _applied(InstanceNorm(), (-1, 4, 4, 3), jnp.ones((2, 4, 4, 5))), r"InstanceNorm: argument `x` has 5 channels \(x.shape=\(2, 4, 4, 5\)\) but the layer was initialised for 3"),
        (lambda: _applied(InstanceNorm(use_scale=False, use_bias=False), (-1, 4, 3), jnp.ones((2, 1, 3))), r"InstanceNorm: argument `x` of shape \(2, 1, 3\) has 1 spatial value\(s\) per channel"),
        (lambda: _applied(InstanceNorm(use_scale=False, use_bias=False), (-1, 4, 3), jnp.ones((2, 0, 3))), r"InstanceNorm: argument `x` of shape \(2, 0, 3\) has 0 spatial value\(s\) per channel"),
        (lambda: _applied(InstanceNorm(use_scale=False, use_bias=False), (-1, 4, 3), jnp.ones((2, 3))), r"InstanceNorm: argument `x` must have rank 3, 4, 5 or 6, but has shape \(2, 3\) \(rank 2\)"),
    ],
)  # fmt: skip
def test_new_norm_inputs_are_checked_at_trace_time(call, match):
    with pytest.raises(LayerConfigError, match=match):
        call()
