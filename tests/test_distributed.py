"""Data parallelism with jit and shardings: a sharded step equals the single-device step.

The test configuration gives JAX four CPU devices.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import funcnn as fn
from funcnn import distributed
from funcnn.train import DEFAULT_LOSS, init_train_state
from funcnn.train.step import build_train_step

pytestmark = pytest.mark.standard_promotion  # optax's optimisers


def test_the_mesh_spans_every_device_along_data():
    mesh = distributed.data_mesh()
    assert mesh.axis_names == ("data",) and mesh.shape["data"] == jax.device_count() == 4


def test_batches_are_sharded_and_state_replicated():
    mesh = distributed.data_mesh()
    images = np.arange(8 * 3, dtype=np.float32).reshape(8, 3)
    batch = distributed.shard_batch(mesh, {"x": images, "y": np.arange(8)})
    assert batch["x"].sharding.spec == jax.sharding.PartitionSpec("data")
    assert {shard.data.shape for shard in batch["x"].addressable_shards} == {(2, 3)}
    np.testing.assert_array_equal(batch["x"], images)
    params = distributed.replicate(mesh, {"w": jnp.ones((3, 2))})
    assert all(shard.data.shape == (3, 2) for shard in params["w"].addressable_shards)


def test_a_batch_that_does_not_divide_is_refused():
    with pytest.raises(
        fn.LayerConfigError,
        match=r"shard_batch: argument `batch_size` 6 does not divide over the 4 devices of the mesh; use a multiple of 4",
    ):
        distributed.shard_batch(distributed.data_mesh(), np.zeros((6, 2)))


@pytest.mark.parametrize("grad", ["custom", "autodiff"])
def test_a_sharded_train_step_equals_the_single_device_step(grad):
    """The hand-written VJPs under jit with Auto mesh axes: XLA all-reduces the gradients."""
    model = fn.serial(
        fn.Conv(4, 3, padding="SAME", grad=grad), fn.Relu(grad=grad), fn.MaxPool(2, grad=grad),
        fn.Flatten(), fn.Dense(3, grad=grad),
    )  # fmt: skip
    optimizer = optax.sgd(0.1)
    step = jax.jit(build_train_step(model, DEFAULT_LOSS, optimizer))
    state = init_train_state(model, optimizer, jax.random.key(0), (-1, 6, 6, 1))
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 255, (8, 6, 6)).astype(np.uint8), rng.integers(0, 3, 8)
    single, single_metrics = step(state, images, labels)
    mesh = distributed.data_mesh()
    sharded, sharded_metrics = step(distributed.replicate(mesh, state), *distributed.shard_batch(mesh, (images, labels)))
    np.testing.assert_allclose(sharded_metrics.loss, single_metrics.loss, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(sharded.params), jax.tree.leaves(single.params), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
