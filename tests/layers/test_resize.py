"""The resizing layers ``Upsample`` and ``Resize``: shapes, the dtype policy, composition, docstring
examples and every error message."""

import doctest
import importlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from funcnn.combinators import fan_in_concat, fan_out, parallel, serial
from funcnn.core import LayerConfigError
from funcnn.layers.conv import Conv
from funcnn.layers.pool import MaxPool
from funcnn.layers.resize import Resize, Upsample
from tests.layers.test_shape_agreement import check_shape_agreement

METHODS = ["nearest", "nearest-exact", "linear", "bilinear", "trilinear", "bicubic"]
KEY = jax.random.key(0)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    "scale, spatial, expected",
    [(2, (5,), (10,)), (3, (4, 5), (12, 15)), ((2, 1), (4, 5), (8, 5)), ((1, 2, 3), (2, 3, 4), (2, 6, 12))],
)
def test_upsample_shape_agreement(scale, spatial, expected, method):
    assert check_shape_agreement(Upsample(scale, method), (-1, *spatial, 3)) == (-1, *expected, 3)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    "shape, spatial, expected",
    [(7, (5,), (7,)), (3, (8, 6), (3, 3)), ((9, 2), (4, 5), (9, 2)), ((1, 5, 2), (2, 3, 4), (1, 5, 2))],
)
def test_resize_shape_agreement(shape, spatial, expected, method):
    assert check_shape_agreement(Resize(shape, method), (-1, *spatial, 3)) == (-1, *expected, 3)


@pytest.mark.parametrize("layer", [Upsample(2, "bilinear"), Resize((6, 3), "bicubic")])
def test_integer_input_is_resized_in_floating_point(layer):
    y, _ = layer.apply((), (), jnp.full((1, 3, 3, 1), 200, jnp.uint8))
    assert y.dtype == jnp.float32
    np.testing.assert_allclose(y, 200.0, rtol=1e-6)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_floating_input_keeps_its_dtype_unless_the_layer_names_one(dtype):
    x = jnp.ones((1, 3, 3, 2), dtype)
    assert Upsample(2, "bilinear").apply((), (), x)[0].dtype == dtype
    assert Upsample(2, "bilinear", dtype=jnp.float32).apply((), (), x)[0].dtype == jnp.float32


def test_custom_and_autodiff_layers_agree():
    x = jax.random.normal(KEY, (2, 5, 7, 3))
    for method in ("nearest", "linear", "bicubic"):
        custom, autodiff = Resize((8, 4), method), Resize((8, 4), method, grad="autodiff")
        g_custom = jax.grad(lambda x, layer=custom: (layer.apply((), (), x)[0] ** 2).sum())(x)
        g_autodiff = jax.grad(lambda x, layer=autodiff: (layer.apply((), (), x)[0] ** 2).sum())(x)
        np.testing.assert_allclose(g_custom, g_autodiff, rtol=1e-5, atol=1e-6)


def test_a_unet_skip_joins_the_upsampled_path_with_the_input():
    """Down by MaxPool(2), back up by Upsample(2), concatenated with the skip: shapes line up."""
    block = serial(
        fan_out(2),
        parallel(serial(MaxPool(2), Conv(8, 3, padding="SAME"), Upsample(2, "bilinear")), Conv(4, 1)),
        fan_in_concat(),
    )
    out_shape, params, state = block.init(KEY, (-1, 8, 8, 3))
    assert out_shape == (-1, 8, 8, 12)
    y, _ = jax.jit(block.apply)(params, state, jnp.ones((2, 8, 8, 3)))
    assert y.shape == (2, 8, 8, 12)


@pytest.mark.parametrize("name", ["funcnn.layers.resize", "funcnn.ops.resize"])
def test_docstring_examples(name):
    # by module name: `funcnn.ops.resize` the attribute may be the function `resize`
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


def _lit(text):
    return "^" + re.escape(text)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: Upsample(0), "Upsample: argument `scale` must be a positive integer, got 0"),
        (lambda: Upsample(2.5), "Upsample: argument `scale` must be a positive integer or a sequence of them, got 2.5 (float)"),
        (lambda: Upsample((2, 0)), "Upsample: argument `scale` must be a positive integer or 1 or 2 or 3 of them, got (2, 0)"),
        (lambda: Upsample((2, 2.0)), "Upsample: argument `scale` must be a positive integer or 1 or 2 or 3 of them, got (2, 2.0)"),
        (lambda: Upsample(True), "Upsample: argument `scale` must be a positive integer or a sequence of them, got True (bool)"),
        (lambda: Upsample(2, "area"), "Upsample: argument `method` must be one of ('nearest', 'nearest-exact', 'linear', 'bilinear', 'trilinear', 'bicubic'), got 'area'"),
        (lambda: Upsample(2, "cubic"), "Upsample: argument `method` must be one of ('nearest', 'nearest-exact', 'linear', 'bilinear', 'trilinear', 'bicubic'), got 'cubic'"),
        (lambda: Upsample(2, dtype="int8"), "Upsample: argument `dtype` must be a floating-point dtype such as jnp.float32, got 'int8' (str)"),
        (lambda: Upsample(2, grad="auto"), "Upsample: argument `grad` must be one of ('custom', 'custom_vjp', 'autodiff'), got 'auto'"),
        (lambda: Resize((0, 4)), "Resize: argument `shape` must be a positive integer or 1 or 2 or 3 of them, got (0, 4)"),
        (lambda: Resize(-1), "Resize: argument `shape` must be a positive integer, got -1"),
        (lambda: Resize((4, 4, 4, 4)), "Resize: argument `shape` must be a positive integer or 1 or 2 or 3 of them, got (4, 4, 4, 4)"),
        (lambda: Resize("28x28"), "Resize: argument `shape` must be a positive integer or a sequence of them, got '28x28' (str)"),
        (lambda: Resize(4, method=None), "Resize: argument `method` must be one of ('nearest', 'nearest-exact', 'linear', 'bilinear', 'trilinear', 'bicubic'), got None"),
        (lambda: Resize((4, 4, 4)).init(KEY, (-1, 8, 8, 3)), "Resize: argument `shape` has 3 entries (4, 4, 4) but the input has 2 spatial dimensions (input shape (-1, 8, 8, 3))"),
        (lambda: Upsample((2, 2)).init(KEY, (-1, 8, 3)), "Upsample: argument `scale` has 2 entries (2, 2) but the input has 1 spatial dimensions (input shape (-1, 8, 3))"),
        (lambda: Upsample(2).init(KEY, (-1, 8)), "Upsample: argument `x` must have rank 3, 4 or 5, but has shape (-1, 8) (rank 2)"),
        (lambda: Resize(4).init(KEY, (-1, 2, 2, 2, 2, 1)), "Resize: argument `x` must have rank 3, 4 or 5, but has shape (-1, 2, 2, 2, 2, 1) (rank 6)"),
        (lambda: Resize((4, 4, 4)).apply((), (), jnp.ones((1, 8, 8, 3))), "Resize: argument `shape` has 3 entries (4, 4, 4) but the input has 2 spatial dimensions (input shape (1, 8, 8, 3))"),
        (lambda: jax.jit(Resize((4, 4)).apply).lower((), (), jax.ShapeDtypeStruct((1, 8, 3), jnp.float32)), "Resize: argument `shape` has 2 entries (4, 4) but the input has 1 spatial dimensions (input shape (1, 8, 3))"),
        (lambda: Upsample(2).apply((), (), jnp.ones((2, 0, 4, 1))), "Upsample: argument `x` has an empty spatial axis: shape (2, 0, 4, 1)"),
        (lambda: Upsample(2).apply({"w": jnp.ones(2)}, (), jnp.ones((1, 4, 4, 1))), "Upsample: argument `params` must be empty (the layer has no parameters; init returns ())"),
        (lambda: Upsample(2).apply((), (), jnp.ones((1, 4, 4, 1), jnp.complex64)), "Upsample: argument `x` has complex dtype complex64 (shape (1, 4, 4, 1))"),
    ],
)  # fmt: skip
def test_bad_arguments_raise_a_message_naming_them(call, message):
    with pytest.raises(LayerConfigError, match=_lit(message)):
        call()
