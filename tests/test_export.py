"""A model's inference function as a jax.export artifact: same logits, any batch, JAX alone."""

import subprocess
import sys

import jax
import numpy as np
import pytest

import funcnn as fn
from funcnn import export


@pytest.fixture(scope="module")
def trained():
    model = fn.models.resnet20()  # BatchNorm state, residual blocks, projection shortcuts
    _, params, state = model.init(jax.random.key(0), (-1, 28, 28, 1))
    return model, params, state


def test_the_artifact_gives_apply_s_logits_for_any_batch(trained, tmp_path):
    model, params, state = trained
    path = export.save(export.export(model, params, state, (28, 28)), tmp_path / "model.jax")
    loaded = export.load(path)
    rng = np.random.default_rng(0)
    for batch in (1, 5):
        images = rng.integers(0, 256, (batch, 28, 28)).astype(np.uint8)
        want = model.apply(params, state, fn.data.scale_images(images))[0]
        np.testing.assert_allclose(loaded.call(images), want, rtol=1e-5, atol=1e-5)


def test_jax_alone_loads_and_calls_the_artifact(trained, tmp_path):
    model, params, state = trained
    path = export.save(export.export(model, params, state, (28, 28)), tmp_path / "model.jax")
    code = (
        "import sys, jax, numpy as np; "
        "e = jax.export.deserialize(bytearray(open(sys.argv[1], 'rb').read())); "
        "print(e.call(np.zeros((3, 28, 28), np.uint8)).shape, 'funcnn' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["(3,", "10)", "False"]


def test_a_function_of_batch_norm_state_serialises(trained):
    """BatchNormState is registered with jax.export, so the state may be an argument or a result."""
    model, params, state = trained
    step = jax.jit(lambda p, s, x: model.apply(p, s, x, train=True)[1])
    x = np.ones((2, 28, 28, 1), np.float32)
    exported = jax.export.deserialize(jax.export.export(step)(params, state, x).serialize())
    for got, want in zip(
        jax.tree.leaves(exported.call(params, state, x)), jax.tree.leaves(step(params, state, x))
    ):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    result = exported.out_tree.unflatten(range(exported.out_tree.num_leaves))
    nodes = jax.tree.leaves(result, is_leaf=lambda node: isinstance(node, fn.BatchNormState))
    assert any(isinstance(node, fn.BatchNormState) for node in nodes)


@pytest.mark.parametrize("shape", [(-1, 28, 28), (28.0, 28), "28x28", (0, 28)])
def test_a_bad_image_shape_is_named(trained, shape):
    with pytest.raises(
        fn.LayerConfigError, match=r"export: argument `image_shape` must be one image's shape"
    ):
        export.export(*trained, shape)


def test_probabilities_sum_to_one():
    rows = export.probabilities(np.array([[1000.0, 1000.0], [0.0, np.log(3.0)]]))
    np.testing.assert_allclose(rows, [[0.5, 0.5], [0.25, 0.75]])
