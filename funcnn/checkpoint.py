"""Save and restore pytrees with orbax-checkpoint: atomic, the last N kept, no pickle, verified.

A checkpoint directory holds one sub-folder per step. orbax writes each step
into a temporary folder and renames it when complete, so a process killed
mid-write leaves the previous checkpoints intact (the unfinished temporary
folder is ignored, and removed by the next [`save`][funcnn.checkpoint.save]). Arrays go to
TensorStore files, the metadata to JSON.

Every step then gets a manifest, ``MANIFEST``: the format version and, per file as written, its size and
SHA-256 digest. Per-file digests need no single pass over the whole state, so they still work when a later
version writes params sharded over devices and processes (each process lists the files it wrote).
[`restore`][funcnn.checkpoint.restore] and [`read_metadata`][funcnn.checkpoint.read_metadata] verify the step
first and raise [`CheckpointDamagedError`][funcnn.checkpoint.CheckpointDamagedError] naming the step and the
first problem; a step without its manifest (a write killed before it, or an older format) is not intact.
[`latest_intact_step`][funcnn.checkpoint.latest_intact_step] finds the newest intact step and
[`move_aside`][funcnn.checkpoint.move_aside] moves a damaged one into a folder of damaged steps, never
deleting it.

Examples:
    >>> import jax.numpy as jnp, tempfile
    >>> d = tempfile.mkdtemp()
    >>> save(d, 10, {"w": jnp.ones(3)}, {"epoch": 1})
    >>> latest_step(d)
    10
    >>> tree, meta = restore(d, {"w": jnp.zeros(3)})
    >>> meta
    {'epoch': 1}
"""

from __future__ import annotations

import enum
import errno
import hashlib
import json
import logging
import os
import re
import shutil
import sys
import time
import traceback
from collections.abc import Collection
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

DEFAULT_KEEP = 3
"""How many of the newest checkpoints [`save`][funcnn.checkpoint.save] keeps by default."""

FORMAT_VERSION = 1
"""The checkpoint format this version writes and reads; another version is incompatible."""

MANIFEST = "funcnn-manifest.json"
"""The file in each step folder holding the format version and every file's size and digest."""

DAMAGED = "damaged-checkpoints"
"""The folder, next to the checkpoint directory, that damaged steps are moved into."""


class CheckpointError(ValueError):
    """A checkpoint cannot be saved or restored; the message names the directory and step."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The directory holds no complete checkpoint, or not the requested step."""


class CheckpointMismatchError(CheckpointError):
    """A checkpoint's tree structure, shapes or dtypes differ from the target's."""


class CheckpointDamagedError(CheckpointError):
    """A checkpoint's files are missing, truncated or altered, or its format is unknown."""


class DamagedCheckpointWarning(UserWarning):
    """A damaged checkpoint was skipped (and moved aside) in favour of an older intact one."""


class WriteError(OSError):
    """A file under an output folder could not be written (disk full, read-only, permissions,
    a path the file system cannot hold); ``filename`` and ``strerror`` say which and why."""

    def __str__(self) -> str:
        return f"cannot write {self.filename}: {self.strerror}"


class Damage(enum.Enum):
    """What kind of problem a checkpoint step has (``Problem.kind``)."""

    UNFINISHED = "its write did not finish"
    """No manifest: the write was cut before it proved itself, or another version wrote it."""
    GONE = "it was removed"
    """The step folder disappeared while it was read (pruned by a run that is saving)."""
    UNREADABLE = "its manifest is unreadable"
    FORMAT = "another format version"
    MISSING = "a file is missing"
    TRUNCATED = "a file has the wrong size"
    ALTERED = "a file's digest differs"


class Problem(str):
    """One problem of a checkpoint step: the sentence, with its [`Damage`][funcnn.checkpoint.Damage] as
    ``kind``."""

    kind: Damage

    def __new__(cls, kind: Damage, text: str) -> Problem:
        problem = super().__new__(cls, text)
        problem.kind = kind
        return problem


def save(
    directory: str | os.PathLike,
    step: int,
    pytree: Any,
    metadata: dict[str, Any] | None = None,
    *,
    keep: int = DEFAULT_KEEP,
    protect: Collection[int] = (),
) -> None:
    """Atomically write ``pytree`` and JSON ``metadata`` as checkpoint ``step``.

    Older checkpoints beyond the newest ``keep`` are deleted ([`prunable`][funcnn.checkpoint.prunable]),
    except those in ``protect``, and so are temporary folders left by interrupted writes. The deletion starts
    only once the new step is proved (its manifest written), oldest first, so a process killed at any point
    keeps every protected step and the newest intact one.

    Args:
      directory: the checkpoint directory (created if missing).
      step: the step number, larger than every step already saved.
      pytree: a pytree of arrays (``jax.random.key`` arrays included), sharded
        or not; with several processes every process calls ``save`` and process 0
        writes the manifest and prunes.
      metadata: a JSON-serialisable dict saved next to the arrays.
      keep: how many of the newest checkpoints to keep.
      protect: older steps never deleted (e.g. the best epoch's,
        [`funcnn.train.RunFolder`][funcnn.train.RunFolder]).

    Raises:
      CheckpointError: ``pytree`` holds a NaN or infinity (a diverged
        state is never saved), ``step`` is not newer than the latest, or
        ``keep`` is not positive (the checkpoint just written must stay).
    """
    directory = Path(directory).absolute()
    if not isinstance(keep, int) or keep < 1:
        raise CheckpointError(f"{directory}: `keep` must be a positive integer, got {keep!r}")
    bad = non_finite_paths(pytree)
    if bad:
        raise CheckpointError(
            f"{directory}: refusing to save step {step}: non-finite values in {', '.join(bad[:5])}"
        )
    latest = latest_step(directory)
    if latest is not None and step <= latest:
        raise CheckpointError(f"{directory}: cannot save step {step}: step {latest} is already saved")
    try:
        with _quiet_orbax(), _manager(directory, writing=True) as manager:
            manager.save(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardSave(pytree), metadata=ocp.args.JsonSave(metadata or {})
                ),
            )
            manager.wait_until_finished()
        if jax.process_index() == 0:  # with several processes orbax wrote the step together; one lists it
            _write_manifest(directory / str(step))
    except Exception as error:
        failure = write_error(error, directory / str(step))
        if failure is None:
            raise
        if jax.process_index() == 0:
            remove_partial(directory, step)
        raise failure from None
    if jax.process_index() == 0:
        for old in prunable(all_steps(directory), keep, protect):  # only once the new step proves itself
            shutil.rmtree(directory / str(old), ignore_errors=True)
    sync_processes(f"funcnn-checkpoint-{step}")


def prunable(steps: list[int], keep: int, protect: Collection[int] = ()) -> list[int]:
    """The steps [`save`][funcnn.checkpoint.save] deletes: all but the newest ``keep`` of ``steps``
    (ascending) and those in ``protect``, oldest first.

    Args:
      steps: the saved steps, ascending (as [`all_steps`][funcnn.checkpoint.all_steps] lists them).
      keep: how many of the newest steps to keep, 0 or more (0 selects every step not protected).
      protect: steps never selected, wherever they are.

    Returns:
      The steps to delete, a sublist of ``steps`` in their order; ``[]`` when ``steps`` has at
      most ``keep`` entries.

    Examples:
        >>> prunable([2, 4, 6, 8], keep=2, protect={2})
        [4]
    """
    return [step for step in steps[: max(len(steps) - keep, 0)] if step not in protect]


class _quiet_orbax:  # noqa: N801 (a context manager used as a function)
    """Quiet orbax during the block: its ``absl`` log shows only critical records (a failed write
    logs a traceback per writing thread, and the exception [`save`][funcnn.checkpoint.save] raises says it
    all), and unraisable errors of its threads are held, shown when the block succeeds. After a failed write,
    TensorStore reports "Event loop is closed" for each write still under way once it
    ends; those reports (from asyncio's ``call_soon_threadsafe``) are dropped from then on."""

    def __enter__(self) -> None:
        self.logger = logging.getLogger("absl")
        self.level = self.logger.level
        self.logger.setLevel(logging.CRITICAL)
        self.held: list[Any] = []
        self.hook, sys.unraisablehook = sys.unraisablehook, self.held.append

    def __exit__(self, kind: type | None, *exc: object) -> None:
        sys.unraisablehook = self.hook if kind is None else _without_closed_loop(self.hook)
        self.logger.setLevel(self.level)
        for unraisable in self.held if kind is None else ():
            self.hook(unraisable)


def _without_closed_loop(hook: Any) -> Any:
    """``hook`` (a ``sys.unraisablehook``) without the "Event loop is closed" errors that writes
    still under way after a failed save report later, once they end."""
    if getattr(hook, "drops_closed_loop", False):
        return hook

    def filtered(unraisable: Any) -> None:
        frames = traceback.extract_tb(unraisable.exc_traceback) if unraisable.exc_traceback else []
        closed = (
            isinstance(unraisable.exc_value, RuntimeError)
            and str(unraisable.exc_value) == "Event loop is closed"
            and any(frame.name == "call_soon_threadsafe" for frame in frames)
        )
        if not closed:
            hook(unraisable)

    filtered.drops_closed_loop = True
    return filtered


_OS_ERROR_CODE = re.compile(r"os_error_code='?(\d+)")
"""How TensorStore, under orbax, reports the OS error behind a failed write."""


def write_error(error: BaseException, path: Path) -> WriteError | None:
    """``error`` as a [`WriteError`][funcnn.checkpoint.WriteError] naming ``path`` when an OS error caused it
    (an ``OSError``, or TensorStore's message carrying ``os_error_code``); ``None`` otherwise.

    Args:
      error: the exception a write raised (orbax's, TensorStore's or Python's own).
      path: the file or folder being written, named in the result when ``error`` names no file.

    Returns:
      ``error`` itself when it already is a [`WriteError`][funcnn.checkpoint.WriteError]; for an
      ``OSError`` with an ``errno``, a ``WriteError`` with its ``errno``, ``strerror`` and filename
      (else ``path``); for a message carrying ``os_error_code=N``, a ``WriteError`` with errno ``N``,
      ``os.strerror(N)`` (the whole message when ``N`` is not a known code) and ``path``; ``None``
      for any other error, which the caller re-raises as it is.
    """
    if isinstance(error, WriteError):
        return error
    if isinstance(error, OSError) and error.errno is not None:
        return WriteError(error.errno, error.strerror, str(error.filename or path))
    found = _OS_ERROR_CODE.search(str(error))
    if found is None:
        return None
    code = int(found.group(1))
    return WriteError(code, os.strerror(code) if code in errno.errorcode else str(error), str(path))


def remove_partial(
    directory: str | os.PathLike, step: int, *, settle: float = 0.25, within: float = 10.0
) -> None:
    """Remove what an unfinished write of ``step`` left: orbax's temporary folders, and the
    step folder itself when it has no manifest (never a finished step).

    After a failed write, TensorStore's writes still under way may create files for a moment
    more, so the removal is repeated until nothing has come back for ``settle`` seconds (at
    most ``within`` seconds in all).

    Args:
      directory: the checkpoint directory.
      step: the step whose unfinished write is cleaned up; a step folder holding its manifest is
        left alone.
      settle: seconds to wait after each removal before looking again; the call takes at least
        this long.
      within: seconds after which the removal stops repeating even if files keep coming back
        (checked after each wait, so the call can run over by up to ``settle``).
    """
    directory = Path(directory).absolute()
    folder = directory / str(step)

    def leftovers() -> list[Path]:
        partial = [folder] if folder.is_dir() and not (folder / MANIFEST).exists() else []
        return [*directory.glob(f"{step}.orbax-checkpoint-tmp*"), *partial]

    deadline = time.monotonic() + within
    while True:
        for path in leftovers():
            shutil.rmtree(path, ignore_errors=True)
        time.sleep(settle)
        if not leftovers() or time.monotonic() > deadline:
            break


def sync_processes(name: str) -> None:
    """Wait until every process of a multi-process run gets here (nothing with one process).

    Args:
      name: the barrier's name; every process must pass the same one at the same point.
    """
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def latest_step(directory: str | os.PathLike) -> int | None:
    """The newest complete checkpoint step in ``directory``, or ``None``.

    Args:
      directory: the checkpoint directory (need not exist).

    Returns:
      The largest saved step; ``None`` when there is none.
    """
    return max(all_steps(directory), default=None)


def all_steps(directory: str | os.PathLike) -> list[int]:
    """The complete checkpoint steps in ``directory``, ascending (``[]`` when none).

    Args:
      directory: the checkpoint directory (need not exist).

    Returns:
      The saved steps: orbax names a finished step's folder by its number (an unfinished
      one carries a temporary suffix until it is renamed), so a listing finds them.
    """
    directory = Path(directory).absolute()
    try:
        names = os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(
        int(name) for name in names if name.isascii() and name.isdigit() and (directory / name).is_dir()
    )


def read_metadata(
    directory: str | os.PathLike, step: int | None = None, *, verify: bool = True
) -> dict[str, Any]:
    """The JSON metadata of checkpoint ``step`` (the latest when ``None``).

    Args:
      directory: the checkpoint directory.
      step: the step to read, or ``None`` for the latest.
      verify: check the step's files against its manifest first (``False`` when the
        caller has just done so, e.g. [`funcnn.train.RunFolder`][funcnn.train.RunFolder]).

    Returns:
      The metadata dict given to [`save`][funcnn.checkpoint.save].

    Raises:
      CheckpointNotFoundError: there is no such checkpoint.
      CheckpointDamagedError: the checkpoint is not intact.
    """
    directory = Path(directory).absolute()
    step = _existing_step(directory, step)
    if verify:
        check_intact(directory, step)
    with _manager(directory) as manager:
        return manager.restore(step, args=ocp.args.Composite(metadata=ocp.args.JsonRestore())).metadata


def restore(
    directory: str | os.PathLike, target: Any, step: int | None = None, *, verify: bool = True
) -> tuple[Any, dict[str, Any]]:
    """Restore checkpoint ``step`` into the structure of ``target``.

    Args:
      directory: the checkpoint directory.
      target: a pytree with the structure, shapes and dtypes of the saved
        one: arrays (their values are not used) or ``jax.ShapeDtypeStruct`` s,
        e.g. from ``jax.eval_shape``. Arrays come back with the target's
        sharding, by default on the first device.
      step: the step to restore, or ``None`` for the latest.
      verify: check the step's files against its manifest first (as
        [`read_metadata`][funcnn.checkpoint.read_metadata]).

    Returns:
      ``(pytree, metadata)``: the saved arrays in ``target``'s structure, and
      the saved metadata dict.

    Raises:
      CheckpointNotFoundError: there is no such checkpoint.
      CheckpointDamagedError: its files are missing, truncated or altered, or
        its format version is unknown.
      CheckpointMismatchError: the saved tree differs from ``target`` in
        structure, shapes or dtypes; the message lists the differences.
    """
    directory = Path(directory).absolute()
    step = _existing_step(directory, step)
    if verify:
        check_intact(directory, step)
    with _manager(directory) as manager:
        saved = _leaf_specs(manager.item_metadata(step).state.tree)
        expected = _leaf_specs(jax.tree.map(_stored_form, target))
        problems = _differences(saved, expected)
        if problems:
            raise CheckpointMismatchError(
                f"{directory}: checkpoint step {step} does not match the target pytree: "
                + "; ".join(problems[:8])
                + (f"; and {len(problems) - 8} more" if len(problems) > 8 else "")
            )
        restored = manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(jax.tree.map(_abstract, target)),
                metadata=ocp.args.JsonRestore(),
            ),
        )
    return restored.state, restored.metadata


def restore_part(
    directory: str | os.PathLike, target: dict[str, Any], step: int | None = None, *, verify: bool = True
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Restore only some top-level entries of checkpoint ``step``, e.g. a train state's
    ``params`` and ``model_state`` for evaluation, without its optimiser state.

    Args:
      directory: the checkpoint directory.
      target: a dict from top-level names of the saved tree (a NamedTuple's
        fields) to pytrees with their structure, shapes and dtypes.
      step: the step to restore, or ``None`` for the latest.
      verify: check the step's files against its manifest first (as
        [`read_metadata`][funcnn.checkpoint.read_metadata]).

    Returns:
      ``(part, metadata)``: the requested entries, and the saved metadata dict.

    Raises:
      CheckpointNotFoundError: there is no such checkpoint.
      CheckpointDamagedError: ``verify`` is true and the step is not intact (as
        [`restore`][funcnn.checkpoint.restore]).
      CheckpointMismatchError: a requested leaf is missing or differs in shape or dtype.
    """
    directory = Path(directory).absolute()
    step = _existing_step(directory, step)
    if verify:
        check_intact(directory, step)
    options = ocp.CheckpointManagerOptions(
        enable_async_checkpointing=False, create=False, save_root_metadata=False, lightweight_initialize=True
    )
    handlers = {"state": ocp.PyTreeCheckpointHandler(), "metadata": ocp.JsonCheckpointHandler()}
    with ocp.CheckpointManager(directory, options=options, item_handlers=handlers) as manager:
        saved = _leaf_specs(manager.item_metadata(step).state)
        expected = _leaf_specs(jax.tree.map(_stored_form, target))
        problems = [p for p in _differences(saved, expected) if not p.startswith("not in target")]
        if problems:
            raise CheckpointMismatchError(
                f"{directory}: checkpoint step {step} does not match the requested part: "
                + "; ".join(problems[:8])
            )
        abstract = jax.tree.map(_abstract, target)
        restored = manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.PyTreeRestore(
                    abstract,
                    restore_args=ocp.checkpoint_utils.construct_restore_args(abstract),
                    partial_restore=True,
                ),
                metadata=ocp.args.JsonRestore(),
            ),
        )
    return restored.state, restored.metadata


def _manager(directory: Path, *, writing: bool = False) -> ocp.CheckpointManager:
    """A synchronous orbax ``CheckpointManager`` for ``directory``.

    Only a writing manager creates the directory and removes the temporary
    folders of interrupted writes. It deletes no step: [`save`][funcnn.checkpoint.save] removes old
    steps itself, after the new one's manifest is written. A reading manager
    writes no root metadata, whose barrier would make every process of a
    multi-process run wait for one that only reads.
    """
    options = ocp.CheckpointManagerOptions(
        max_to_keep=None,
        enable_async_checkpointing=False,
        cleanup_tmp_directories=writing,
        create=writing,
        save_root_metadata=writing,
        lightweight_initialize=not writing,  # a reader reads no other step (a saving run may prune one)
    )
    handlers = {"state": ocp.StandardCheckpointHandler(), "metadata": ocp.JsonCheckpointHandler()}
    return ocp.CheckpointManager(directory, options=options, item_handlers=handlers)


def _existing_step(directory: Path, step: int | None) -> int:
    """``step`` (or the latest step) after checking that it exists."""
    steps = all_steps(directory)
    if not steps:
        raise CheckpointNotFoundError(f"{directory}: no complete checkpoint found")
    if step is None:
        return steps[-1]
    if step not in steps:
        raise CheckpointNotFoundError(f"{directory}: no checkpoint for step {step} (saved steps: {steps})")
    return step


def _abstract(leaf: Any) -> jax.ShapeDtypeStruct:
    """A target leaf as shape, dtype and sharding (its own, else the first device)."""
    sharding = getattr(leaf, "sharding", None) or jax.sharding.SingleDeviceSharding(jax.devices()[0])
    return jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding)


def _stored_form(leaf: Any) -> Any:
    """What orbax stores for a leaf: ``jax.random.key`` arrays as their raw ``uint32`` data."""
    if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        return jax.eval_shape(jax.random.key_data, leaf)
    return leaf


def _leaf_specs(tree: Any) -> dict[str, tuple[tuple[int, ...], str]]:
    """Map each leaf's dotted path (orbax's naming) to its ``(shape, dtype)``."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {
        ".".join(_key_name(k) for k in path): (tuple(leaf.shape), np.dtype(leaf.dtype).name)
        for path, leaf in leaves
    }


def _key_name(key: Any) -> str:
    """One path entry as orbax names it: dict keys, attribute names and sequence indices."""
    for attribute in ("key", "name", "idx"):
        if hasattr(key, attribute):
            return str(getattr(key, attribute))
    return str(key)


def _differences(saved: dict, expected: dict) -> list[str]:
    """Human-readable differences between two leaf-spec maps."""
    problems = [f"missing in checkpoint: {p} {expected[p][0]}" for p in expected if p not in saved]
    problems += [f"not in target: {p} {saved[p][0]}" for p in saved if p not in expected]
    problems += [
        f"{p}: checkpoint has shape {saved[p][0]} {saved[p][1]}, target {expected[p][0]} {expected[p][1]}"
        for p in expected
        if p in saved and saved[p] != expected[p]
    ]
    return problems


def non_finite_paths(tree: Any) -> list[str]:
    """Dotted paths of the floating-point leaves holding a NaN or infinity.

    Each leaf is reduced where it lives (one scalar back per leaf), so a state
    sharded over devices and processes is checked without gathering it, and
    leaves on different devices need not move.

    Args:
      tree: a pytree of arrays or Python numbers; leaves of integer, boolean or
        ``jax.random.key`` dtype are skipped, complex ones are checked.

    Returns:
      The paths, in the tree's flattening order, written as orbax names them: dict keys,
      attribute names and sequence indices joined by ``.`` (e.g. ``"params.0.kernel"``);
      ``[]`` when every value is finite.
    """
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    floating = [(path, leaf) for path, leaf in leaves if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact)]
    finite = jax.device_get([jnp.isfinite(x).all() for _, x in floating])
    return [
        ".".join(_key_name(k) for k in path) for (path, _), ok in zip(floating, finite, strict=True) if not ok
    ]


def problems(directory: str | os.PathLike, step: int) -> list[Problem]:
    """What is wrong with checkpoint ``step``: ``[]`` when it is intact.

    Checks the manifest's format version, then every listed file's size and
    SHA-256 digest. Files the manifest does not list are ignored. Each problem
    is a sentence whose ``kind`` ([`Damage`][funcnn.checkpoint.Damage]) says what it is; a step whose
    folder disappears while it is read is [`Damage.GONE`][funcnn.checkpoint.Damage.GONE], not damaged.

    Args:
      directory: the checkpoint directory.
      step: the step to check; its folder need not exist (a missing one is ``GONE``).

    Returns:
      The step's problems, each a [`Problem`][funcnn.checkpoint.Problem]: ``[]`` when intact; one
      when the manifest is missing (``UNFINISHED``, or ``GONE`` when the folder is missing too),
      unreadable (``UNREADABLE``) or of another format version (``FORMAT``); otherwise one
      ``MISSING``, ``TRUNCATED`` or ``ALTERED`` problem per damaged file in file-name order,
      or a single ``GONE`` when the folder vanished while the files were read.
    """
    folder = Path(directory).absolute() / str(step)
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        version, files = manifest["format"], manifest["files"]
        listed = {str(name): (int(entry["size"]), str(entry["sha256"])) for name, entry in files.items()}
    except FileNotFoundError:
        if not folder.is_dir():
            return [Problem(Damage.GONE, f"its folder {folder} was removed while it was read")]
        return [
            Problem(
                Damage.UNFINISHED,
                f"it has no {MANIFEST} (its write did not finish, or another version wrote it)",
            )
        ]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:  # OSError: no permission, ...
        return [Problem(Damage.UNREADABLE, f"its {MANIFEST} is unreadable ({type(error).__name__}: {error})")]
    if version != FORMAT_VERSION:
        return [
            Problem(
                Damage.FORMAT,
                f"its format version {version!r} is not {FORMAT_VERSION}, the one this funcnn reads",
            )
        ]
    found = []
    for name, (size, digest) in sorted(listed.items()):
        path = folder / name
        try:
            if not path.is_file():
                found.append(Problem(Damage.MISSING, f"file {name} is missing"))
            elif path.stat().st_size != size:
                found.append(
                    Problem(
                        Damage.TRUNCATED,
                        f"file {name} has {path.stat().st_size} bytes, not {size} (truncated or altered)",
                    )
                )
            elif _sha256(path) != digest:
                found.append(
                    Problem(Damage.ALTERED, f"file {name} does not match its SHA-256 digest (altered)")
                )
        except FileNotFoundError:
            found.append(Problem(Damage.MISSING, f"file {name} is missing"))
    if found and not folder.is_dir():
        return [Problem(Damage.GONE, f"its folder {folder} was removed while it was read")]
    return found


def check_intact(directory: str | os.PathLike, step: int) -> None:
    """Raise [`CheckpointDamagedError`][funcnn.checkpoint.CheckpointDamagedError] unless checkpoint ``step``
    is intact.

    Args:
      directory: the checkpoint directory.
      step: the step to check, as [`problems`][funcnn.checkpoint.problems] does.

    Raises:
      CheckpointDamagedError: [`problems`][funcnn.checkpoint.problems] finds any problem, an
        unfinished or vanished step included; the message names the directory, the step, the
        first problem and how many more there are.
    """
    found = problems(directory, step)
    if found:
        more = f" (and {len(found) - 1} more problems)" if len(found) > 1 else ""
        raise CheckpointDamagedError(
            f"{Path(directory).absolute()}: checkpoint step {step} is damaged: {found[0]}{more}"
        )


def unfinished(found: list[Problem] | Problem) -> bool:
    """Whether a step's problems say only that its manifest was never written: a save killed
    after orbax committed the arrays (nothing of a finished checkpoint is lost).

    Args:
      found: a step's problems, as [`problems`][funcnn.checkpoint.problems] returns them, or a single
        [`Problem`][funcnn.checkpoint.Problem].

    Returns:
      ``True`` when ``found`` is exactly one problem of kind
      [`Damage.UNFINISHED`][funcnn.checkpoint.Damage.UNFINISHED]; ``False`` otherwise, an empty
      list (an intact step) included.
    """
    found = [found] if isinstance(found, Problem) else found
    return len(found) == 1 and found[0].kind is Damage.UNFINISHED


def latest_intact_step(directory: str | os.PathLike) -> tuple[int | None, list[tuple[int, Problem]]]:
    """The newest intact step (``None`` when there is none), and the damaged steps newer than it.

    Args:
      directory: the checkpoint directory (need not exist).

    Returns:
      ``(step, damaged)`` where ``damaged`` lists ``(step, first problem)``, newest first.
    """
    damaged = []
    for step in reversed(all_steps(directory)):
        found = problems(directory, step)
        if not found:
            return step, damaged
        damaged.append((step, found[0]))
    return None, damaged


def move_aside(directory: str | os.PathLike, step: int) -> Path:
    """Move checkpoint ``step`` into ``DAMAGED`` next to ``directory`` (never delete it); return where.

    Args:
      directory: the checkpoint directory.
      step: the step to move; its folder must exist.

    Returns:
      The step folder's new path, ``<parent of directory>/damaged-checkpoints/<step>``, or
      ``<step>.1``, ``<step>.2`` ... there when an earlier damaged copy of the step holds that name.
    """
    directory = Path(directory).absolute()
    target = directory.parent / DAMAGED / str(step)
    suffix = 1
    while target.exists():
        target = directory.parent / DAMAGED / f"{step}.{suffix}"
        suffix += 1
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(directory / str(step)), str(target))
    return target


def _write_manifest(folder: Path) -> None:
    """Write ``MANIFEST`` for a finished step folder, atomically (a temporary file, then a rename)."""
    files = {
        str(path.relative_to(folder)): {"size": path.stat().st_size, "sha256": _sha256(path)}
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != MANIFEST
    }
    temporary = folder / f"{MANIFEST}.tmp"
    with open(temporary, "w") as handle:
        json.dump({"format": FORMAT_VERSION, "files": files}, handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, folder / MANIFEST)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
