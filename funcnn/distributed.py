"""Data parallelism over every device of every process, with JAX's own sharding.

A mesh with one axis, ``"data"``, spans every device JAX sees (all hosts after
``jax.distributed.initialize``). Batches are sharded along it; parameters and
optimiser state are replicated by default.

**Why ``jit`` with shardings, not ``shard_map``.** The model code and the
hand-written VJPs stay as they are: with the mesh axis of type ``Auto``, XLA's
SPMD partitioner sees the batch sharded and inserts the all-reduce of every
gradient (``dL/dK``, ``dL/dB`` and ``dL/dW`` sum over the batch) itself, and the
same compiled step serves one device or many. Inside ``shard_map`` every
``custom_vjp`` rule would have to reduce over the varying axis by hand, and
with ``Explicit`` axes every ``dot_general`` and convolution in the rules would
need an output sharding; neither buys anything for data parallelism.

>>> import jax, numpy as np
>>> mesh = data_mesh()
>>> batch = shard_batch(mesh, np.zeros((jax.device_count() * 2, 3), np.float32))
>>> batch.shape == (jax.device_count() * 2, 3)
True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from funcnn.core import LayerConfigError

DATA_AXIS = "data"
"""The mesh axis the batch is sharded along."""


def data_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A one-axis mesh named :data:`DATA_AXIS` over ``devices`` (default: every device of every process)."""
    devices = list(jax.devices() if devices is None else devices)
    return jax.make_mesh((len(devices),), (DATA_AXIS,), axis_types=(AxisType.Auto,), devices=devices)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split along :data:`DATA_AXIS`, the rest whole."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    """A full copy on every device of ``mesh``."""
    return NamedSharding(mesh, PartitionSpec())


def check_divisible(where: str, batch_size: int, mesh: Mesh) -> None:
    """The global batch divides evenly over the mesh's devices."""
    devices = mesh.shape[DATA_AXIS]
    if batch_size % devices:
        raise LayerConfigError(
            f"{where}: argument `batch_size` {batch_size} does not divide over the {devices} devices of "
            f"the mesh; use a multiple of {devices}"
        )


def shard_batch(mesh: Mesh, batch: Any) -> Any:
    """Place a pytree of host arrays (this process's rows of the global batch) sharded along the batch.

    With one process the arrays are the whole batch; with several, each process
    passes only its own rows and gets global arrays
    (``jax.make_array_from_process_local_data``).

    Raises:
      LayerConfigError: the global batch does not divide over the mesh's devices.
    """
    sharding = batch_sharding(mesh)

    def place(local: Any) -> jax.Array:
        local = np.asarray(local)
        check_divisible("shard_batch", local.shape[0] * jax.process_count(), mesh)
        return jax.make_array_from_process_local_data(sharding, local)

    return jax.tree.map(place, batch)


def replicate(mesh: Mesh, tree: Any) -> Any:
    """Place a pytree (params, optimiser state, layer state) whole on every device of ``mesh``."""
    return jax.device_put(tree, replicated(mesh))
