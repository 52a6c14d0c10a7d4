"""Data parallelism over every device of every process, with JAX's own sharding.

A mesh with one axis, ``"data"``, spans every device JAX sees (all hosts after
``jax.distributed.initialize``). Batches are sharded along it
([`shard_batch`][funcnn.distributed.shard_batch]: each process places only its own rows,
[`local_rows`][funcnn.distributed.local_rows]);
the training state is replicated, or with ``shard_params`` its parameters and
optimiser state are split along the same axis ([`state_shardings`][funcnn.distributed.state_shardings]).

**Why ``jit`` with shardings, not ``shard_map``.** The model code stays as it
is: with the mesh axis of type ``Auto``, XLA's SPMD partitioner sees the batch
sharded and inserts the all-reduce of every gradient (``dL/dK``, ``dL/dB`` and
``dL/dW`` sum over the batch) itself, gathers sharded parameters where a step
needs them whole, and computes ``BatchNorm``'s statistics over the global
batch; the same compiled step serves one device or many, and one process or
several. ``shard_map`` would make every collective the model's business (a
``psum`` per gradient, an ``axis_name`` per ``BatchNorm``) for no gain in data
parallelism. The hand-written VJPs work there too, and under Explicit mesh
axes, for users who write their own ``shard_map`` steps
(``funcnn.ops._grad.cotangents_like``).

Examples:
    >>> import jax, numpy as np
    >>> mesh = data_mesh()
    >>> batch = shard_batch(mesh, np.zeros((jax.device_count() * 2, 3), np.float32))
    >>> batch.shape == (jax.device_count() * 2, 3)
    True
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from funcnn.core import LayerConfigError

HEARTBEAT_TIMEOUT_SECONDS = 20
"""How long the coordinator waits for a silent process before it declares it lost and every other
process ends (JAX's fatal error, exit 134): the bound on a survivor's wait when the lost process
is not in a collective with it. The same in every process ([`join`][funcnn.distributed.join])."""

INITIALIZATION_TIMEOUT_SECONDS = 120
"""How long a process waits for the others to join the run before it gives up."""

SHUTDOWN_TIMEOUT_SECONDS = 120
"""How long a process waits for the others at the end of a run (more than the gap between their
normal ends: process 0 writes last)."""

_LOST_PEER = re.compile(
    r"Gloo [\w -]+? failed: .*(Connection reset by peer|Connection closed by peer|Broken pipe|Read error|"
    r"Write error|[Tt]imed out)"
)
"""How a collective reports that the process at its other end is gone (gloo, on CPU)."""


class ProcessLostError(RuntimeError):
    """A process of a multi-process run stopped answering; the message names it where it can."""


def join(coordinator: str, processes: int, process_id: int) -> None:
    """Join a multi-process run: ``jax.distributed.initialize`` with explicit coordination timeouts
    ([`HEARTBEAT_TIMEOUT_SECONDS`][funcnn.distributed.HEARTBEAT_TIMEOUT_SECONDS] and the others), and gloo
    collectives on CPU.

    Every process of the run calls it once, before any other JAX call, with the same
    ``coordinator`` and ``processes``.

    Args:
      coordinator: ``"host:port"`` of the coordination service, which process 0 starts and the
        others connect to.
      processes: how many processes the run has.
      process_id: this process's index, ``0`` to ``processes - 1``.
    """
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator,
        processes,
        process_id,
        initialization_timeout=INITIALIZATION_TIMEOUT_SECONDS,
        heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT_SECONDS,
        shutdown_timeout_seconds=SHUTDOWN_TIMEOUT_SECONDS,
    )


@contextlib.contextmanager
def reporting_lost_processes() -> Iterator[None]:
    """Raise a [`ProcessLostError`][funcnn.distributed.ProcessLostError] for an error of the block that says a
    process of the run is gone (a collective whose other end closed). With two processes the lost one is the
    other; with more, the collective does not say which.

    Yields:
      Nothing; the block runs as it is, and only its errors are translated.

    Raises:
      ProcessLostError: the block raised a ``ValueError`` or ``RuntimeError`` whose message is
        gloo's report of a lost peer (connection reset or closed, broken pipe, read or write error,
        timeout) and the run has several processes. Any other error, or any error with one
        process, propagates unchanged.
    """
    try:
        yield
    except (ValueError, RuntimeError) as error:
        if jax.process_count() < 2 or not _LOST_PEER.search(str(error)):
            raise
        me = jax.process_index()
        other = f"process {1 - me}" if jax.process_count() == 2 else "another process"
        raise ProcessLostError(
            f"process {me} lost contact with {other} of the run (it stopped or its host went away); the "
            "last checkpoint is intact: start every process again with --resume"
        ) from None


DATA_AXIS = "data"
"""The mesh axis the batch is sharded along."""


def data_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A one-axis mesh named [`DATA_AXIS`][funcnn.distributed.DATA_AXIS] over ``devices`` (default: every
    device of every process).

    Args:
      devices: the devices of the mesh, in mesh order; ``None`` for ``jax.devices()``.

    Returns:
      A ``jax.sharding.Mesh`` of shape ``{"data": len(devices)}``, its axis of type ``Auto``.
    """
    devices = list(jax.devices() if devices is None else devices)
    return jax.make_mesh((len(devices),), (DATA_AXIS,), axis_types=(AxisType.Auto,), devices=devices)


def check_mesh(where: str, mesh: Any) -> Mesh:
    """A ``jax.sharding.Mesh`` with a [`DATA_AXIS`][funcnn.distributed.DATA_AXIS] axis, every other axis of
    size 1.

    Args:
      where: the caller's name, the start of the error message.
      mesh: the value to check.

    Returns:
      ``mesh`` itself, unchanged.

    Raises:
      LayerConfigError: ``mesh`` is not a ``jax.sharding.Mesh``, has no
        [`DATA_AXIS`][funcnn.distributed.DATA_AXIS] axis, or has another axis of size above 1.
    """
    if not isinstance(mesh, Mesh) or DATA_AXIS not in mesh.axis_names:
        raise LayerConfigError(
            f"{where}: argument `mesh` must be a jax.sharding.Mesh with a {DATA_AXIS!r} axis "
            f"(funcnn.distributed.data_mesh()), got {mesh!r}"
        )
    others = {name: size for name, size in mesh.shape.items() if name != DATA_AXIS and size > 1}
    if others:
        raise LayerConfigError(
            f"{where}: argument `mesh` has axes {dict(mesh.shape)}; training is data-parallel over "
            f"{DATA_AXIS!r} only, so every other axis must have size 1"
        )
    return mesh


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split along [`DATA_AXIS`][funcnn.distributed.DATA_AXIS], the rest whole.

    Args:
      mesh: a mesh with a [`DATA_AXIS`][funcnn.distributed.DATA_AXIS] axis, e.g. from
        [`data_mesh`][funcnn.distributed.data_mesh].

    Returns:
      ``NamedSharding(mesh, PartitionSpec("data"))``.
    """
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    """A full copy on every device of ``mesh``.

    Args:
      mesh: the mesh whose devices each hold the whole array.

    Returns:
      ``NamedSharding(mesh, PartitionSpec())``.
    """
    return NamedSharding(mesh, PartitionSpec())


def check_divisible(where: str, batch_size: int, mesh: Mesh) -> None:
    """The global batch divides evenly over the mesh's devices.

    Args:
      where: the caller's name, the start of the error message.
      batch_size: the global batch size, rows over all processes.
      mesh: a mesh with a [`DATA_AXIS`][funcnn.distributed.DATA_AXIS] axis; its size is the
        device count.

    Raises:
      LayerConfigError: ``batch_size`` is not a multiple of the mesh's
        [`DATA_AXIS`][funcnn.distributed.DATA_AXIS] size.
    """
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

    Args:
      mesh: a mesh with a [`DATA_AXIS`][funcnn.distributed.DATA_AXIS] axis, e.g. from
        [`data_mesh`][funcnn.distributed.data_mesh].
      batch: a pytree of host arrays (anything ``np.asarray`` takes), each of shape
        ``(rows, ...)`` with the same ``rows`` in every process.

    Returns:
      ``batch``'s structure with each leaf a global ``jax.Array`` of shape
      ``(rows * jax.process_count(), ...)``, split along its first axis by
      [`batch_sharding`][funcnn.distributed.batch_sharding]; dtypes as ``jax.device_put`` gives
      them (64-bit ones become 32-bit unless ``jax_enable_x64`` is set).

    Raises:
      LayerConfigError: a leaf is a scalar (no batch axis), or the global batch
        (``rows * jax.process_count()``) does not divide over the mesh's devices.
    """
    sharding = batch_sharding(mesh)

    def place(local: Any) -> jax.Array:
        local = np.asarray(local)
        if local.ndim == 0:
            raise LayerConfigError(
                f"shard_batch: argument `batch` has a leaf of shape () ({local!r}), with no batch axis to "
                "split; pass arrays of shape (rows, ...)"
            )
        check_divisible("shard_batch", local.shape[0] * jax.process_count(), mesh)
        return jax.make_array_from_process_local_data(sharding, local)

    return jax.tree.map(place, batch)


def local_rows(mesh: Mesh, batch_size: int) -> slice:
    """The rows of a global batch of ``batch_size`` that this process's devices hold
    (all of them with one process).

    Args:
      mesh: a mesh with a [`DATA_AXIS`][funcnn.distributed.DATA_AXIS] axis, e.g. from
        [`data_mesh`][funcnn.distributed.data_mesh].
      batch_size: the global batch size, rows over all processes.

    Returns:
      ``slice(start, stop)`` of the global batch's rows, the block this process passes to
      [`shard_batch`][funcnn.distributed.shard_batch]; ``slice(0, batch_size)`` with one process.

    Raises:
      LayerConfigError: ``batch_size`` does not divide over the mesh's devices.
      ValueError: this process's devices hold rows that are not one contiguous block (a mesh
        whose device order interleaves the processes).
    """
    check_divisible("local_rows", batch_size, mesh)
    indices = batch_sharding(mesh).addressable_devices_indices_map((batch_size,))
    rows = {range(batch_size)[index[0]] for index in indices.values()}
    start, stop = min(r.start for r in rows), max(r.stop for r in rows)
    if sum(len(r) for r in rows) != stop - start:
        raise ValueError(
            f"local_rows: this process's devices hold rows {sorted((r.start, r.stop) for r in rows)} of the "
            "batch, not one block; build the mesh with each process's devices next to each other (data_mesh)"
        )
    return slice(start, stop)


def same_in_every_process(choice: str, choices: Sequence[str]) -> str:
    """Process 0's ``choice`` (one of ``choices``) in every process, so that all run the same program.

    Args:
      choice: this process's choice, one of ``choices`` (``ValueError`` otherwise, with any number of
        processes).
      choices: the possible values, in the same order in every process; the index of process 0's
        choice is what is broadcast.

    Returns:
      Process 0's ``choice``; with one process, ``choice`` itself.

    Raises:
      ValueError: when ``choice`` is not one of ``choices``.
    """
    if choice not in choices:
        raise ValueError(
            f"same_in_every_process: argument `choice` {choice!r} is not one of {tuple(choices)}"
        )
    if jax.process_count() == 1:
        return choice
    index = multihost_utils.broadcast_one_to_all(np.int32(choices.index(choice)))
    return choices[int(index)]


def replicate(mesh: Mesh, tree: Any) -> Any:
    """Place a pytree (params, optimiser state, layer state, a data set) whole on every device of
    ``mesh``; with several processes each passes the same values.

    Args:
      mesh: the mesh whose devices each receive a full copy.
      tree: a pytree of arrays (host or device).

    Returns:
      ``tree`` with each leaf a ``jax.Array`` of the same shape, replicated over ``mesh``
      ([`replicated`][funcnn.distributed.replicated]).
    """
    return jax.device_put(tree, replicated(mesh))


def onto_mesh(mesh: Mesh, tree: Any) -> Any:
    """``tree`` with every leaf that lives outside ``mesh``'s devices (trained on another device count,
    or a host array) replicated onto them; leaves already on exactly those devices keep their placement
    (replicated or split, as [`state_shardings`][funcnn.distributed.state_shardings] made them).

    Args:
      mesh: the mesh to place the leaves on.
      tree: a pytree of arrays, e.g. a restored training state.

    Returns:
      ``tree`` with each leaf a ``jax.Array`` on exactly ``mesh``'s devices: a ``jax.Array``
      whose devices are already exactly those is kept as it is, every other leaf is replicated.
    """
    devices = set(mesh.devices.flat)

    def place(leaf: Any) -> Any:
        if isinstance(leaf, jax.Array) and leaf.sharding.device_set == devices:
            return leaf
        return jax.device_put(leaf, replicated(mesh))

    return jax.tree.map(place, tree)


def leaf_sharding(mesh: Mesh, shape: Sequence[int], shard: bool) -> NamedSharding:
    """How one leaf of the state is placed: replicated, or with ``shard`` split along
    [`DATA_AXIS`][funcnn.distributed.DATA_AXIS] on its largest axis that divides by the device count
    (replicated when none does).

    Splitting along the batch axis's mesh axis is fully sharded data parallelism:
    each device stores ``1/n`` of every large leaf, and XLA gathers a leaf where
    the step needs it whole.

    Args:
      mesh: a mesh with a [`DATA_AXIS`][funcnn.distributed.DATA_AXIS] axis; its size ``n`` is the
        device count.
      shape: the leaf's shape.
      shard: split the leaf (``True``) or replicate it (``False``).

    Returns:
      [`replicated`][funcnn.distributed.replicated] when ``shard`` is false, the mesh has one
      device or no axis of ``shape`` is a positive multiple of ``n``; otherwise a ``NamedSharding`` splitting
      the largest such axis (the first of equal ones) along ``"data"``.
    """
    devices = mesh.shape[DATA_AXIS]
    fits = [axis for axis, size in enumerate(shape) if size % devices == 0 and size >= devices]
    if not shard or devices == 1 or not fits:
        return replicated(mesh)
    axis = max(fits, key=lambda a: (shape[a], -a))
    return NamedSharding(mesh, PartitionSpec(*([None] * axis), DATA_AXIS))


def state_shardings(mesh: Mesh, state: Any, shard_params: bool = False) -> Any:
    """The shardings of a training state (a [`funcnn.train.TrainState`][funcnn.train.TrainState] of arrays or
    shapes): everything replicated, or with ``shard_params`` its ``params`` and ``opt_state`` split by
    [`leaf_sharding`][funcnn.distributed.leaf_sharding].

    Args:
      mesh: a mesh with a [`DATA_AXIS`][funcnn.distributed.DATA_AXIS] axis, e.g. from
        [`data_mesh`][funcnn.distributed.data_mesh].
      state: the training state; its ``params``, ``model_state`` and ``opt_state`` leaves need
        only a ``shape`` (arrays or ``jax.ShapeDtypeStruct`` s, e.g. from ``jax.eval_shape``).
      shard_params: split ``params`` and ``opt_state`` over the devices; ``model_state``,
        ``step`` and ``key`` are replicated either way.

    Returns:
      A ``TrainState`` of the same structure whose leaves are ``NamedSharding`` s, one per
      leaf of ``params``, ``model_state`` and ``opt_state`` and one each for ``step`` and
      ``key``, ready for ``jax.jit``'s ``in_shardings`` / ``out_shardings`` or ``jax.device_put``.
    """

    def place(tree: Any, shard: bool) -> Any:
        return jax.tree.map(lambda leaf: leaf_sharding(mesh, leaf.shape, shard), tree)

    return state._replace(
        params=place(state.params, shard_params),
        model_state=place(state.model_state, False),
        opt_state=place(state.opt_state, shard_params),
        step=replicated(mesh),
        key=replicated(mesh),
    )
