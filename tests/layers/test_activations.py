"""Activation layers: values against ``jax.nn``, argument checks, the dtype policy."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcnn as fn
from funcnn.layers.activations import (
    Celu,
    HardSigmoid,
    HardSilu,
    LogSigmoid,
    PRelu,
    Relu6,
    Selu,
    Silu,
    Softplus,
    Softsign,
)
from tests.layers.test_shape_agreement import check_shape_agreement

KEY = jax.random.key(0)


@pytest.mark.parametrize(
    "layer, reference",
    [
        (fn.Relu(), jax.nn.relu),
        (fn.Sigmoid(), jax.nn.sigmoid),
        (fn.Tanh(), jnp.tanh),
        (fn.LeakyRelu(0.1), lambda x: jax.nn.leaky_relu(x, 0.1)),
        (fn.Elu(0.7), lambda x: jax.nn.elu(x, 0.7)),
        (fn.Gelu(approximate=False), lambda x: jax.nn.gelu(x, approximate=False)),
        (fn.Softmax(), jax.nn.softmax),
        (fn.LogSoftmax(), jax.nn.log_softmax),
        (fn.Softmax(axis=(0, 1)), lambda x: jax.nn.softmax(x, axis=(0, 1))),
    ],
    ids=lambda v: fn.identity.layer_name(v) if isinstance(v, fn.Layer) else "",
)
def test_activation_values(layer, reference):
    x = jnp.linspace(-3.0, 3.0, 24).reshape(2, 12)
    np.testing.assert_allclose(layer.apply((), (), x)[0], reference(x), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("layer", [fn.Relu(), fn.Sigmoid(), fn.Softmax(), fn.Gelu()])
def test_integer_inputs_become_the_default_float(layer):
    y, _ = layer.apply((), (), jnp.array([[0, 1, 2]], jnp.int32))
    assert y.dtype == jnp.float32


def test_softmax_axis_out_of_range_is_named_with_the_shape():
    with pytest.raises(
        fn.LayerConfigError,
        match=r"Softmax: argument `axis`=2 is out of range \(or repeated\) for an input of shape \(2, 3\)",
    ):
        fn.Softmax(axis=2).apply((), (), jnp.ones((2, 3)))


# --- the activations added with the layers issue ------------------------------------------

NEW_LAYERS = [
    (Relu6(), jax.nn.relu6),
    (Silu(), jax.nn.silu),
    (Softplus(), jax.nn.softplus),
    (Softplus(beta=2.0, threshold=4.0), lambda x: jnp.where(2 * x > 4, x, jax.nn.softplus(2 * x) / 2)),
    (Softsign(), jax.nn.soft_sign),
    (Selu(), jax.nn.selu),
    (Celu(0.5), lambda x: jax.nn.celu(x, 0.5)),
    (LogSigmoid(), jax.nn.log_sigmoid),
    (HardSigmoid(), jax.nn.hard_sigmoid),
    (HardSilu(), jax.nn.hard_silu),
]


@pytest.mark.parametrize(
    "layer, reference", NEW_LAYERS, ids=lambda v: fn.identity.layer_name(v) if isinstance(v, fn.Layer) else ""
)
def test_new_activation_values_match_jax_nn(layer, reference):
    x = jnp.linspace(-8.0, 8.0, 48).reshape(2, 4, 6)
    y, state = layer.apply((), (), x)
    assert state == ()
    np.testing.assert_allclose(y, reference(x), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    "layer, reference", NEW_LAYERS, ids=lambda v: fn.identity.layer_name(v) if isinstance(v, fn.Layer) else ""
)
def test_new_activations_keep_shapes_and_follow_the_dtype_policy(layer, reference):
    for spatial in [(7,), (4, 5), (2, 3, 4)]:
        check_shape_agreement(layer, (-1, *spatial, 3))
    assert layer.apply((), (), jnp.ones((2, 3), jnp.int32))[0].dtype == jnp.float32
    assert layer.apply((), (), jnp.ones((2, 3), jnp.bfloat16))[0].dtype == jnp.bfloat16


def test_the_grad_switch_reaches_the_op():
    """``grad="autodiff"`` differentiates the forward pass: same gradients as the hand-written rule."""
    x = jnp.linspace(-5.0, 5.0, 12).reshape(3, 4)
    for make in (Relu6, Silu, HardSilu, Selu):
        grads = [
            jax.grad(lambda x, layer=make(grad=grad): jnp.sum(layer.apply((), (), x)[0] ** 2))(x)
            for grad in ("custom", "autodiff")
        ]
        np.testing.assert_allclose(*grads, rtol=1e-6, atol=1e-6)


# --- PRelu ------------------------------------------------------------------------------------


def test_prelu_default_is_one_shared_slope_of_a_quarter():
    out_shape, params, state = PRelu().init(KEY, (-1, 5, 5, 3))
    assert out_shape == (-1, 5, 5, 3) and state == ()
    assert set(params) == {"slope"} and params["slope"].shape == () and params["slope"].dtype == jnp.float32
    assert float(params["slope"]) == 0.25


@pytest.mark.parametrize("spatial", [(6,), (4, 5), (2, 3, 4)], ids=["1d", "2d", "3d"])
def test_prelu_per_channel_has_one_slope_per_channel(spatial):
    layer = PRelu(per_channel=True, initial_slope=-0.1, param_dtype=jnp.bfloat16)
    out_shape = check_shape_agreement(layer, (-1, *spatial, 3))
    assert out_shape == (-1, *spatial, 3)
    _, params, _ = layer.init(KEY, (-1, *spatial, 3))
    assert params["slope"].shape == (3,) and params["slope"].dtype == jnp.bfloat16
    np.testing.assert_array_equal(
        params["slope"].astype(jnp.float32), np.full(3, -0.1, np.float32).astype(jnp.bfloat16)
    )


def test_prelu_applies_each_channels_slope_to_its_negative_entries():
    layer = PRelu(per_channel=True)
    _, params, state = layer.init(KEY, (-1, 2, 3))
    params = {"slope": jnp.array([0.0, 0.5, 2.0])}
    x = jnp.array([[[-1.0, -2.0, -3.0], [1.0, 2.0, 3.0]]])
    y, _ = layer.apply(params, state, x)
    np.testing.assert_allclose(y, [[[0.0, -1.0, -6.0], [1.0, 2.0, 3.0]]])


@pytest.mark.parametrize("per_channel", [False, True])
def test_prelu_slope_is_trained(per_channel):
    layer = PRelu(per_channel=per_channel)
    _, params, state = layer.init(KEY, (-1, 3, 4))
    x = jnp.linspace(-3.0, 3.0, 24).reshape(2, 3, 4)

    def loss(params, grad):
        return jnp.sum(PRelu(per_channel=per_channel, grad=grad).apply(params, state, x)[0] ** 2)

    custom, autodiff = jax.grad(loss)(params, "custom"), jax.grad(loss)(params, "autodiff")
    assert custom["slope"].shape == params["slope"].shape
    assert jnp.all(custom["slope"] > 0)  # y = a x on x < 0: d/da sum(a^2 x^2) = 2 a sum(x^2) > 0
    np.testing.assert_allclose(custom["slope"], autodiff["slope"], rtol=1e-6)


def test_prelu_dtype_policy():
    layer = PRelu(per_channel=True)
    _, params, state = layer.init(KEY, (-1, 3))
    assert layer.apply(params, state, jnp.ones((2, 3), jnp.int32))[0].dtype == jnp.float32
    assert layer.apply(params, state, jnp.ones((2, 3), jnp.bfloat16))[0].dtype == jnp.bfloat16
    y, _ = PRelu(dtype=jnp.bfloat16).apply({"slope": jnp.asarray(0.25)}, (), jnp.ones((2, 3)))
    assert y.dtype == jnp.bfloat16


# --- argument checks ----------------------------------------------------------------------


def _applied(layer, init_shape, x, params=None):
    _, p, s = layer.init(KEY, init_shape)
    return layer.apply(p if params is None else params(p), s, x)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: Relu6(grad="fast"), "Relu6: argument `grad` must be one of ('custom', 'custom_vjp', 'autodiff'), got 'fast'"),
        (lambda: Silu(dtype="int32"), "Silu: argument `dtype` must be a floating-point dtype such as jnp.float32, got 'int32' (str)"),
        (lambda: Softplus(0.0), "Softplus: argument `beta` must be > 0, got 0.0"),
        (lambda: Softplus(beta=-2), "Softplus: argument `beta` must be > 0, got -2"),
        (lambda: Softplus(threshold=None), "Softplus: argument `threshold` must be a real number, got None (NoneType)"),
        (lambda: Softplus(threshold=float("inf")), "Softplus: argument `threshold` must be a real number, got inf (float)"),
        (lambda: Softsign(grad="autograd"), "Softsign: argument `grad` must be one of ('custom', 'custom_vjp', 'autodiff'), got 'autograd'"),
        (lambda: Selu(dtype=jnp.int8), "Selu: argument `dtype` must be a floating-point dtype"),
        (lambda: Celu(0.0), "Celu: argument `alpha` must be nonzero (CELU divides x by it), got 0.0"),
        (lambda: Celu("1"), "Celu: argument `alpha` must be a real number, got '1' (str)"),
        (lambda: LogSigmoid(grad=1), "LogSigmoid: argument `grad` must be one of ('custom', 'custom_vjp', 'autodiff'), got 1"),
        (lambda: HardSigmoid(dtype="bogus"), "HardSigmoid: argument `dtype` must be a floating-point dtype such as jnp.float32, got 'bogus' (str)"),
        (lambda: HardSilu(grad="Custom"), "HardSilu: argument `grad` must be one of ('custom', 'custom_vjp', 'autodiff'), got 'Custom'"),
        (lambda: PRelu(3), "PRelu: argument `per_channel` must be True or False, got 3 (int)"),
        (lambda: PRelu(initial_slope=float("nan")), "PRelu: argument `initial_slope` must be a real number, got nan (float)"),
        (lambda: PRelu(initial_slope=jnp.ones(3)), "PRelu: argument `initial_slope` must be a real number, got an array of shape (3,)"),
        (lambda: PRelu(param_dtype="int8"), "PRelu: argument `param_dtype` must be a floating-point dtype such as jnp.float32, got 'int8' (str)"),
        (lambda: PRelu(grad="auto"), "PRelu: argument `grad` must be one of ('custom', 'custom_vjp', 'autodiff'), got 'auto'"),
        (lambda: PRelu(per_channel=True).init(KEY, (-1,)), "PRelu: argument `x` must have rank >= 2 (batch, ..., channels) for per_channel=True, but has shape (-1,)"),
        (lambda: PRelu(per_channel=True).apply({"slope": jnp.ones(())}, (), jnp.ones(4)), "PRelu: argument `x` must have rank >= 2 (batch, ..., channels) for per_channel=True, but has shape (4,)"),
        (lambda: _applied(PRelu(per_channel=True), (-1, 4), jnp.ones((2, 3))), "PRelu: argument `x` has 3 channels (x.shape=(2, 3)) but the layer was initialised for 4 (`slope` has shape (4,))"),
        (lambda: _applied(PRelu(per_channel=True), (-1, 3), jnp.ones((2, 3, 5, 5))), "PRelu: argument `x` has 5 channels (x.shape=(2, 3, 5, 5)) but the layer was initialised for 3 (`slope` has shape (3,)); funcnn is channels-last (NHWC): was x passed channels-first?"),
        (lambda: _applied(PRelu(), (-1, 4), jnp.ones((2, 4)), params=lambda p: {"slope": jnp.ones(4)}), "PRelu: argument `params` leaf 'slope' has shape (4,) but init builds () for an input of shape (2, 4)"),
        (lambda: _applied(PRelu(), (-1, 4), jnp.ones((2, 4)), params=lambda p: {"alpha": p["slope"]}), "PRelu: argument `params` has no leaf 'slope' (init builds shape () for an input of shape (2, 4)); its leaves are ['alpha']"),
        (lambda: _applied(PRelu(), (-1, 4), jnp.ones((2, 4)), params=lambda p: ()), "PRelu: argument `params` must hold ['slope'] as init builds it for an input of shape (2, 4), got () (tuple)"),
        (lambda: _applied(PRelu(), (-1, 4), jnp.ones((2, 4), jnp.complex64)), "PRelu: argument `x` has complex dtype complex64 (shape (2, 4))"),
        (lambda: Selu().apply({"w": jnp.ones(1)}, (), jnp.ones(2)), "Selu: argument `params` must be empty (the layer has no parameters; init returns ())"),
        (lambda: Silu().apply((), (), (jnp.ones(2), jnp.ones(2))), "Silu: argument `x` must be an array, got a tuple of 2 entries; join branches with fan_in_sum() or fan_in_concat() first"),
    ],
)  # fmt: skip
def test_bad_arguments_are_named(call, message):
    with pytest.raises(fn.LayerConfigError, match="^" + re.escape(message)):
        call()
