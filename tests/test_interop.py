"""``funcnn.interop.from_torch``: PyTorch weights in funcnn models, logits equal in float64 (1e-10).

The ready models are rebuilt in PyTorch layer for layer; the PyTorch weights
and BatchNorm running statistics are random, moved with ``from_torch`` and
both models run in evaluation mode on the same images. funcnn's ``"SAME"``
padding with stride 2 on an even size pads ``(0, 1)`` (the odd row at the
end), which PyTorch's symmetric ``padding=`` cannot express, so ``SameConv2d``
pads as funcnn does before a VALID convolution.
"""

import doctest
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcnn as fn
import funcnn.interop
from funcnn.interop import from_torch

TOLERANCE = 1e-10
# Small float64 programs: LLVM optimisation is most of their compile time and changes no arithmetic.
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


@pytest.fixture
def nn():
    """``torch.nn``, the test skipped without PyTorch."""
    return pytest.importorskip("torch").nn


def _same_conv2d(nn):
    """A ``Conv2d`` that pads as funcnn's ``"SAME"``: ``total = max((ceil(n / s) - 1) s + k - n, 0)``
    rows, ``total // 2`` before and the rest after."""

    class SameConv2d(nn.Conv2d):
        def forward(self, x):
            pads = []
            for size, k, s in zip(x.shape[:1:-1], self.kernel_size[::-1], self.stride[::-1]):  # W, then H
                total = max((-(-size // s) - 1) * s + k - size, 0)
                pads += [total // 2, total - total // 2]
            return nn.functional.conv2d(nn.functional.pad(x, pads), self.weight, self.bias, self.stride)

    return SameConv2d


def torch_lenet5(nn, extra=()):
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.Tanh(), nn.AvgPool2d(2),
        nn.Conv2d(6, 16, 5), nn.Tanh(), nn.AvgPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.Tanh(), nn.Linear(120, 84), nn.Tanh(), nn.Linear(84, 10), *extra,
    )  # fmt: skip


def torch_fashion_mnist_cnn(nn):
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(3136, 128), nn.ReLU(), nn.Linear(128, 10),
    )  # fmt: skip


def torch_resnet20(nn, channels=1):
    """``fn.models.resnet20``: the projection shortcut (1x1 conv, BatchNorm) registered after the body,
    as ``parallel(body, shortcut)`` orders them."""
    same_conv = _same_conv2d(nn)

    def conv_bn(c_in, c_out, k, stride):
        return nn.Sequential(same_conv(c_in, c_out, k, stride, bias=False), nn.BatchNorm2d(c_out))

    class Block(nn.Module):
        def __init__(self, c_in, c_out, stride):
            super().__init__()
            self.body = nn.Sequential(conv_bn(c_in, c_out, 3, stride), nn.ReLU(), conv_bn(c_out, c_out, 3, 1))
            self.shortcut = conv_bn(c_in, c_out, 1, stride) if stride > 1 else nn.Identity()

        def forward(self, x):
            return (self.body(x) + self.shortcut(x)).relu()

    blocks = [Block(f if b > 0 or f == 16 else f // 2, f, 2 if f > 16 and b == 0 else 1)
              for f in (16, 32, 64) for b in range(3)]  # fmt: skip
    return nn.Sequential(
        conv_bn(channels, 16, 3, 1),
        nn.ReLU(),
        *blocks,
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, 10),
    )


def randomised(net, seed=0):
    """``net`` in float64, evaluation mode, its BatchNorm weights and running statistics random too."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    net = net.double().eval()
    with torch.no_grad():
        for name, t in net.state_dict().items():
            uniform = torch.rand(t.shape, generator=generator, dtype=torch.float64)
            if name.endswith(("running_var", "running_mean")) or t.ndim == 1 and "weight" in name:
                t.copy_(0.5 + uniform if not name.endswith("running_mean") else uniform - 0.5)
            elif t.is_floating_point():
                t.copy_(t + 0.1 * (uniform - 0.5))  # PyTorch's random init, moved off it
    return net


def max_logit_difference(model, net, input_shape, n=3, seed=0):
    """``max |funcnn(x) - torch(x)|`` over ``n`` random images, both in float64."""
    import torch

    params, state = from_torch(model, input_shape, net.state_dict(), dtype=jnp.float64)
    x = np.random.default_rng(seed).standard_normal((n, *input_shape[1:]))
    apply = jax.jit(model.apply).lower(params, state, x).compile(FAST_COMPILE)
    logits, new_state = apply(params, state, x)
    assert jax.tree.all(jax.tree.map(lambda a, b: bool((a == b).all()), new_state, state))
    with torch.no_grad():
        expected = net(torch.from_numpy(np.moveaxis(x, -1, 1).copy())).numpy()
    return float(np.max(np.abs(np.asarray(logits) - expected)))


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize(
    ("name", "build", "input_shape"),
    [
        ("lenet5", torch_lenet5, (-1, 28, 28, 1)),
        ("fashion_mnist_cnn", torch_fashion_mnist_cnn, (-1, 28, 28, 1)),
        ("resnet20", torch_resnet20, (-1, 28, 28, 1)),
        ("resnet20", lambda nn: torch_resnet20(nn, channels=3), (-1, 32, 32, 3)),
    ],
)
def test_ready_models_give_pytorchs_logits_with_its_weights(nn, name, build, input_shape):
    net = randomised(build(nn))
    assert max_logit_difference(fn.models.MODELS[name](), net, input_shape) < TOLERANCE


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize(
    ("layers", "modules", "input_shape"),
    [
        pytest.param(
            lambda: [fn.Conv(6, (3, 3), strides=2, padding=1, groups=2), fn.Flatten(), fn.Dense(5)],
            lambda nn: [nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2), nn.Flatten(), nn.Linear(96, 5)],
            (-1, 7, 8, 4),
            id="grouped-strided-conv-padding-1-then-flatten",
        ),
        pytest.param(
            lambda: [fn.Conv(3, 3, use_bias=False), fn.Flatten(), fn.Dense(4, use_bias=False)],
            lambda nn: [nn.Conv1d(2, 3, 3, bias=False), nn.Flatten(), nn.Linear(15, 4, bias=False)],
            (-1, 7, 2),
            id="1d-conv-without-bias",
        ),
        pytest.param(
            lambda: [
                fn.ConvTranspose(6, (3, 2), strides=2, padding=1, groups=2, output_padding=1),
                fn.Flatten(),
                fn.Dense(3),
            ],
            lambda nn: [
                nn.ConvTranspose2d(4, 6, (3, 2), stride=2, padding=1, groups=2, output_padding=1),
                nn.Flatten(),
                nn.Linear(420, 3),
            ],
            (-1, 5, 4, 4),
            id="grouped-conv-transpose-then-flatten",
        ),
        pytest.param(
            lambda: [fn.BatchNorm(use_scale=False, use_bias=False), fn.Flatten(), fn.Dense(3)],
            lambda nn: [nn.BatchNorm2d(2, affine=False), nn.Flatten(), nn.Linear(24, 3)],
            (-1, 3, 4, 2),
            id="batchnorm-without-affine",
        ),
    ],
)
def test_single_layers_give_pytorchs_outputs(nn, layers, modules, input_shape):
    net = randomised(nn.Sequential(*modules(nn)), seed=1)
    model = fn.serial(*layers())
    difference = max_logit_difference(model, net, input_shape)
    assert difference < TOLERANCE


def test_a_state_dict_of_numpy_arrays_is_moved_into_funcnns_layouts():
    model = fn.serial(fn.Conv(4, (3, 2)), fn.BatchNorm(), fn.Flatten(), fn.Dense(5))
    rng = np.random.default_rng(0)
    weights = {
        "c.weight": rng.standard_normal((4, 1, 3, 2)), "c.bias": rng.standard_normal(4),
        "n.weight": rng.random(4), "n.bias": rng.random(4), "n.running_mean": rng.random(4),
        "n.running_var": rng.random(4), "n.num_batches_tracked": np.array(7),
        "d.weight": rng.standard_normal((5, 4 * 2 * 3)), "d.bias": rng.standard_normal(5),
    }  # fmt: skip
    params, state = from_torch(model, (-1, 4, 4, 1), weights)
    np.testing.assert_array_equal(
        params[0]["kernel"], weights["c.weight"].transpose(2, 3, 1, 0).astype(np.float32)
    )
    assert params[1]["scale"][2] == np.float32(weights["n.weight"][2])
    assert state[1].var[3] == np.float32(weights["n.running_var"][3])
    # Dense row (h, w, c) of funcnn's NHWC flatten is PyTorch's column (c, h, w) of an NCHW flatten.
    h, w, c = 1, 2, 3
    assert params[3]["kernel"][(h * 3 + w) * 4 + c, 4] == np.float32(
        weights["d.weight"][4, (c * 2 + h) * 3 + w]
    )
    _, init_params, init_state = model.init(jax.random.key(0), (-1, 4, 4, 1))
    assert jax.tree.structure((params, state)) == jax.tree.structure((init_params, init_state))
    assert all(a.dtype == jnp.float32 for a in jax.tree.leaves((params, state)))


def test_a_saved_state_dict_is_read_from_its_file(nn, tmp_path):
    import torch

    net = torch_lenet5(nn)
    torch.save(net.state_dict(), tmp_path / "lenet5.pt")
    from_file = from_torch(fn.models.lenet5(), (-1, 28, 28, 1), tmp_path / "lenet5.pt")
    from_dict = from_torch(fn.models.lenet5(), (-1, 28, 28, 1), net.state_dict())
    assert jax.tree.all(jax.tree.map(lambda a, b: bool((a == b).all()), from_file, from_dict))


def test_reading_a_file_without_torch_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError
    with pytest.raises(ImportError, match=r"from_torch: reading the PyTorch file .*w\.pt' needs torch"):
        from_torch(fn.models.lenet5(), (-1, 28, 28, 1), tmp_path / "w.pt")


def test_batchnorm_running_variance_conventions_differ_by_n_over_n_minus_1(nn):
    """PyTorch updates with the unbiased batch variance, funcnn with the biased one; PyTorch's
    ``momentum=0.1`` is funcnn's ``momentum=0.9``."""
    import torch

    x = np.random.default_rng(0).standard_normal((4, 3, 2, 2))  # NHWC, n = 4 * 3 * 2 = 24 per channel
    norm = nn.BatchNorm2d(2).double().train()
    norm(torch.from_numpy(np.moveaxis(x, -1, 1).copy()))
    layer = fn.BatchNorm(momentum=0.9)
    _, params, state = layer.init(jax.random.key(0), x.shape)
    _, new_state = layer.apply(params, state, x.astype(np.float32), train=True)
    biased = x.reshape(-1, 2).var(axis=0)
    n = 24
    np.testing.assert_allclose(norm.running_var.numpy(), 0.9 + 0.1 * biased * n / (n - 1), rtol=1e-12)
    np.testing.assert_allclose(new_state.var, 0.9 + 0.1 * biased, rtol=1e-6)
    np.testing.assert_allclose(new_state.mean, norm.running_mean.numpy(), rtol=1e-6, atol=1e-7)


# Errors: the first PyTorch key and funcnn layer that do not fit, their shapes, the counts.


def test_a_state_dict_with_one_layer_more_names_the_extra_key(nn):
    net = torch_lenet5(nn, extra=[nn.Linear(10, 10)])
    with pytest.raises(
        fn.LayerConfigError,
        match=r"has 6 modules with weights but the model has 5 layers with weights; the first without "
        r"a funcnn layer is PyTorch key '12.weight' \(a Linear: weight \(10, 10\), bias \(10,\)\)",
    ):
        from_torch(fn.models.lenet5(), (-1, 28, 28, 1), net.state_dict())


def test_a_state_dict_with_one_layer_fewer_names_the_funcnn_layer_left_over(nn):
    net = torch_lenet5(nn)[:-1]
    with pytest.raises(
        fn.LayerConfigError,
        match=r"has 4 modules with weights but the model has 5 layers with weights; the first without "
        r"PyTorch weights is funcnn layer params\[11\] \(Dense\) \(kernel \(84, 10\), bias \(10,\), "
        r"which take a PyTorch Linear with weight \(10, 84\), bias \(10,\)\)",
    ):
        from_torch(fn.models.lenet5(), (-1, 28, 28, 1), net.state_dict())


def test_a_shape_mismatch_names_the_key_the_layer_and_both_shapes(nn):
    net = torch_lenet5(nn)
    net[3] = nn.Conv2d(6, 8, 5)
    with pytest.raises(
        fn.LayerConfigError,
        match=r"does not fit the model at PyTorch key '3.weight' \(a convolution: weight \(8, 6, 5, 5\), "
        r"bias \(8,\)\) and funcnn layer params\[3\] \(Conv\) \(kernel \(5, 5, 6, 16\), bias \(16,\), "
        r"which take a PyTorch convolution with weight \(16, 6, 5, 5\), bias \(16,\)\): the shapes differ: "
        r"weight \(8, 6, 5, 5\) where \(16, 6, 5, 5\) is expected, bias \(8,\) where \(16,\) is expected$",
    ):
        from_torch(fn.models.lenet5(), (-1, 28, 28, 1), net.state_dict())


def test_a_batchnorm_where_a_conv_is_expected_is_a_kind_mismatch():
    model = fn.serial(fn.Conv(4, (3, 3)), fn.BatchNorm())
    bn = {f"0.{name}": np.ones(4) for name in ("weight", "bias", "running_mean", "running_var")}
    conv = {"1.weight": np.ones((4, 4, 3, 3)), "1.bias": np.ones(4)}
    with pytest.raises(
        fn.LayerConfigError,
        match=r"at PyTorch key '0.weight' \(a BatchNorm: weight \(4,\), .*\) and funcnn layer "
        r"params\[0\] \(Conv\) .*: a convolution is expected, not a BatchNorm$",
    ):
        from_torch(model, (-1, 8, 8, 1), {**bn, **conv})


def test_a_state_dict_of_another_architecture_gives_the_counts(nn):
    net = torch_resnet20(nn)
    with pytest.raises(
        fn.LayerConfigError,
        match=r"at PyTorch key '0.0.weight' .* and funcnn layer params\[0\] \(Conv\) .*: the PyTorch module "
        r"has missing \['bias'\] \(use_bias / use_scale must match PyTorch's bias / affine\) \(the model has "
        r"4 layers with weights and the state_dict 43 modules with weights: is it a state_dict of another "
        r"architecture\?\)",
    ):
        from_torch(fn.models.fashion_mnist_cnn(), (-1, 28, 28, 1), net.state_dict())


def test_a_layer_from_torch_cannot_fill_is_named():
    model = fn.serial(fn.Conv(4, (3, 3)), fn.LayerNorm())
    with pytest.raises(
        fn.LayerConfigError,
        match=r"layer with weights that from_torch cannot fill: params\[1\] \(LayerNorm\)",
    ):
        from_torch(model, (-1, 8, 8, 1), {})


def test_a_shape_change_between_flatten_and_dense_is_refused():
    halve = fn.Layer(lambda key, shape: ((shape[0], shape[1] // 2), (), ()), lambda p, s, x, **kw: (x, s))
    model = fn.serial(fn.Flatten(), halve, fn.Dense(2))
    with pytest.raises(fn.LayerConfigError, match=r"a Flatten to \(-1, 8\) followed.* to \(-1, 4\)"):
        from_torch(model, (-1, 2, 2, 2), {"0.weight": np.ones((2, 4)), "0.bias": np.ones(2)})


@pytest.mark.parametrize(
    ("state_dict", "message"),
    [
        ([np.ones(3)], r"must be a mapping of names to arrays .* got list"),
        (
            {"state_dict": {"0.weight": np.ones(3)}},
            r"entry 'state_dict' is a dict, not an array; .*pass that entry",
        ),
        ({"0.weight": "ones"}, r"entry '0.weight' must be a numeric array, got str"),
    ],
)
def test_a_state_dict_that_is_not_a_mapping_of_arrays_is_refused(state_dict, message):
    with pytest.raises(fn.LayerConfigError, match=rf"from_torch: argument `state_dict` {message}"):
        from_torch(fn.serial(fn.Dense(3)), (-1, 2), state_dict)


def test_docstring_examples():
    result = doctest.testmod(funcnn.interop)
    assert result.attempted > 0 and result.failed == 0
