"""The hand-written rules under sharding: gradients (the VJPs) and forward-mode tangents (the JVPs)
of a batch split over four devices equal the single-device ones (float64), under ``jit`` with Auto
and with Explicit mesh axes and inside ``shard_map``, where each VJP sums its parameter cotangents
over the devices as JAX's own rules do."""

import jax
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

import funcnn as fn
from funcnn.ops._rules import RULES

BLOCKS = {
    "dense": lambda: fn.serial(fn.Flatten(), fn.Dense(3)),
    "conv": lambda: fn.serial(fn.Conv(4, 3, padding="SAME"), fn.Flatten(), fn.Dense(3)),
    "strided dilated conv": lambda: fn.serial(
        fn.Conv(3, 2, strides=2, padding=((1, 0), (0, 1))),
        fn.Conv(2, 2, dilation=2),
        fn.Flatten(),
        fn.Dense(3),
    ),
    "grouped conv": lambda: fn.serial(
        fn.Conv(4, 3, padding="SAME"), fn.Conv(4, 3, groups=2), fn.GlobalAvgPool()
    ),
    "conv transpose": lambda: fn.serial(fn.ConvTranspose(3, 3, strides=2), fn.GlobalMaxPool()),
    "max pool": lambda: fn.serial(
        fn.Conv(4, 3), fn.MaxPool(2), fn.MaxPool(2, strides=1), fn.Flatten(), fn.Dense(3)
    ),
    "avg pool": lambda: fn.serial(fn.AvgPool(3, strides=2, padding="SAME"), fn.Flatten(), fn.Dense(3)),
    "activations": lambda: fn.serial(
        fn.Flatten(),
        fn.Dense(5),
        fn.Relu(),
        fn.Dense(5),
        fn.Tanh(),
        fn.Dense(5),
        fn.Sigmoid(),
        fn.Dense(5),
        fn.Gelu(),
        fn.Dense(5),
        fn.Elu(),
        fn.Dense(5),
        fn.LeakyRelu(),
        fn.Dense(3),
        fn.LogSoftmax(),
    ),  # fmt: skip
}

MODES = ["auto", "explicit", "explicit, params unplaced", "shard_map"]


@pytest.fixture(scope="module", autouse=True)
def double(x64):
    """float64: the sharded and single-device sums differ only in their order."""


def _gradient(model, state):
    return jax.grad(lambda p, x: (model.apply(p, state, x)[0] ** 2).sum())


def _tangent(model, state):
    """The outputs' tangent along the parameters and the input (forward mode, the hand-written JVPs)."""
    return lambda p, x: jax.jvp(lambda p, x: model.apply(p, state, x)[0], (p, x), (p, x))[1]


def _on_mesh(block, mode, derivative, out_spec):
    """``derivative(model, state)(params, x)`` on one device, and on four under ``mode``."""
    model = block()
    x = np.random.default_rng(0).normal(size=(8, 6, 6, 2))
    _, params, state = model.init(jax.random.key(0), x.shape)
    params = jax.tree.map(lambda a: a.astype(np.float64), params)
    fun = derivative(model, state)
    reference = fun(params, x)
    kind = AxisType.Auto if mode == "auto" else AxisType.Explicit
    mesh = jax.make_mesh((4,), ("data",), axis_types=(kind,))
    with jax.set_mesh(mesh):
        xs = jax.device_put(x, NamedSharding(mesh, P("data")))
        # unplaced: parameters never put on the mesh enter the rules unsharded (the gradient comes
        # back replicated on the mesh)
        ps = params if mode.endswith("unplaced") else jax.device_put(params, NamedSharding(mesh, P()))
        if mode == "shard_map":
            # the cotangent of the unvaried params comes back summed over "data", i.e. the global gradient
            fun = jax.shard_map(fun, mesh=mesh, in_specs=(P(), P("data")), out_specs=out_spec)
        return jax.jit(fun)(ps, xs), reference


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_sharded_gradients_equal_the_single_device_ones(name, mode):
    sharded, reference = _on_mesh(BLOCKS[name], mode, _gradient, P())
    for got, want in zip(jax.tree.leaves(sharded), jax.tree.leaves(reference), strict=True):
        assert got.dtype == want.dtype == np.float64
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_sharded_forward_mode_equals_the_single_device_one(name, mode):
    sharded, reference = _on_mesh(BLOCKS[name], mode, _tangent, P("data"))
    assert sharded.dtype == reference.dtype == np.float64
    np.testing.assert_allclose(np.asarray(sharded), np.asarray(reference), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode", MODES)
def test_on_a_mesh_reverse_mode_runs_the_hand_written_vjp_and_forward_mode_the_jvp(mode, rule_calls):
    """Counted while tracing: once for the single-device reference, once on the mesh."""
    with rule_calls(RULES["conv"]) as calls:
        _on_mesh(BLOCKS["conv"], mode, _gradient, P())
    assert calls["bwd"] >= 2 and calls["jvp"] == 0, calls
    with rule_calls(RULES["conv"]) as calls:
        _on_mesh(BLOCKS["conv"], mode, _tangent, P("data"))
    assert calls["jvp"] >= 2 and calls["bwd"] == 0, calls


def test_the_parameter_cotangent_is_unvaried_inside_shard_map():
    """Without the sum over the devices JAX refuses the rule's output (check_vma stays on)."""
    model = fn.Dense(2)
    _, params, state = model.init(jax.random.key(0), (8, 3))
    mesh = jax.make_mesh((4,), ("data",), axis_types=(AxisType.Explicit,))

    def per_device(p, x):
        return jax.grad(lambda p: model.apply(p, state, x)[0].sum())(p)

    with jax.set_mesh(mesh):
        x = jax.device_put(np.ones((8, 3)), NamedSharding(mesh, P("data")))
        grads = jax.jit(jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P("data")), out_specs=P()))(
            params, x
        )
    np.testing.assert_allclose(np.asarray(grads["kernel"]), np.full((3, 2), 8.0))
    np.testing.assert_allclose(np.asarray(grads["bias"]), np.full(2, 8.0))


def test_the_custom_vjp_mechanisms_forward_mode_error_names_the_fix():
    conv = fn.Conv(2, 3, grad="custom_vjp")
    _, params, _ = conv.init(jax.random.key(0), (-1, 5, 5, 1))
    x = np.ones((1, 5, 5, 1), np.float32)
    with pytest.raises(TypeError, match=r"can't apply forward-mode autodiff .* give the layer or op grad='custom' "
                                        r".* `with funcnn.grad_mode\('autodiff'\):`"):  # fmt: skip
        jax.jvp(lambda x: conv.apply(params, (), x)[0], (x,), (x,))


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_bfloat16_cotangents_keep_their_primals_dtypes(name):
    """With bfloat16 params and inputs every hand-written rule returns bfloat16 cotangents."""
    import jax.numpy as jnp

    model = BLOCKS[name]()
    x = jnp.asarray(np.random.default_rng(0).normal(size=(8, 6, 6, 2)), jnp.bfloat16)
    _, params, state = model.init(jax.random.key(0), x.shape)
    params = jax.tree.map(lambda a: a.astype(jnp.bfloat16), params)
    dparams, dx = jax.grad(
        lambda p, x: model.apply(p, state, x)[0].astype(jnp.float32).sum(), argnums=(0, 1)
    )(params, x)
    assert dx.dtype == jnp.bfloat16
    assert all(leaf.dtype == jnp.bfloat16 for leaf in jax.tree.leaves(dparams))
