"""``fit``: a training run, composed of the pure loop and its callbacks.

``funcnn.train.loop`` trains (no files, no printing); the callbacks
([`funcnn.train.callbacks`][funcnn.train.callbacks]) resume, checkpoint, write ``metrics.jsonl`` and
``curves.png`` ([`funcnn.train.Checkpoints`][funcnn.train.Checkpoints]) and show progress
([`funcnn.train.ProgressBar`][funcnn.train.ProgressBar]). Each check of ``fit``'s arguments is here, once.
"""

from __future__ import annotations

import functools
import operator
import os
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np
import optax
from jax.sharding import Mesh

from funcnn import checkpoint, checks, distributed, interrupts
from funcnn.core import Layer, LayerConfigError
from funcnn.data.batching import batch_indices, scale_images
from funcnn.labels import freeze, trainable_mask
from funcnn.train.callbacks import Callback, Checkpoints, ProgressBar, StopTraining, TrainStart, as_callback
from funcnn.train.evaluate import evaluate
from funcnn.train.loop import (
    MODES,
    batches_runner,
    choose_mode,
    compiled_epoch_or_step,
    epoch_runner,
    train_epochs,
)
from funcnn.train.state import TrainState, abstract_train_state, init_train_state, model_output_shape
from funcnn.train.step import DEFAULT_LOSS, Augment, Loss, Preprocess


def _batch_iterable(train_data: Any, mode: str) -> Iterable | None:
    """``train_data`` when it is a re-iterable of batches, ``None`` when it is an ``(images, labels)`` pair.

    Raises:
      LayerConfigError: a one-shot iterator (its second epoch would be empty), or ``mode="scan"``.
    """
    is_pair = (
        isinstance(train_data, (tuple, list))
        and len(train_data) == 2
        and all(hasattr(part, "shape") for part in train_data)
    )
    if is_pair or not isinstance(train_data, Iterable) or hasattr(train_data, "shape"):
        return None
    if iter(train_data) is train_data:
        raise LayerConfigError(
            "fit: argument `train_data` is a one-shot iterator; pass a re-iterable of (images, labels) "
            "batches (a list, or an object whose __iter__ starts over), so every epoch sees them all"
        )
    if mode == "scan":
        raise LayerConfigError("fit: argument `mode`='scan' needs (images, labels) arrays, not batches")
    return train_data


class FitResult(NamedTuple):
    """What [`fit`][funcnn.train.fit.fit] returns.

    Attributes:
      state: the final training state.
      history: one metrics record per epoch, as written to ``metrics.jsonl``.
    """

    state: TrainState
    history: list[dict[str, Any]]


def fit(
    model: Layer,
    train_data: tuple[np.ndarray, np.ndarray],
    test_data: tuple[np.ndarray, np.ndarray] | None = None,
    *,
    optimizer: optax.GradientTransformation,
    epochs: int,
    batch_size: int,
    loss: Loss = DEFAULT_LOSS,
    seed: int = 0,
    mode: str = "auto",
    preprocess: Preprocess = scale_images,
    augment: Augment | None = None,
    out: str | os.PathLike | None = None,
    resume: bool = False,
    keep: int = checkpoint.DEFAULT_KEEP,
    config: dict[str, Any] | None = None,
    eval_batch_size: int = 1000,
    progress: bool = False,
    mesh: Mesh | None = None,
    shard_params: bool = False,
    callbacks: Sequence[Callback] = (),
    trainable: Any = None,
    initial: tuple[Any, Any] | None = None,
) -> FitResult:
    """Train ``model`` for ``epochs`` epochs, evaluating on ``test_data`` after each.

    ``callbacks`` ([`funcnn.train.Callback`][funcnn.train.Callback]) see the run begin, each
    epoch end and the run end; one may resume it. ``out``, ``resume``, ``keep``
    and ``config`` are short for a [`funcnn.train.Checkpoints`][funcnn.train.Checkpoints] callback
    and ``progress`` for a [`funcnn.train.ProgressBar`][funcnn.train.ProgressBar], run before
    ``callbacks``. With ``out``, every epoch appends a record to ``OUT/metrics.jsonl``
    (``epoch``, ``step``, ``train_loss``, ``train_accuracy``, ``test_loss``,
    ``test_accuracy``, ``seconds``, ``images_per_second``, ``devices``,
    ``mode``), redraws ``OUT/curves.png`` and saves a checkpoint under
    ``OUT/checkpoints/`` (the last ``keep`` kept).

    The compiled epoch (or step) is cached per model, loss, optimiser,
    preprocess, augment, mode, mesh and ``shard_params``, so calling ``fit`` again
    with the same objects (e.g. to resume in the same process) does not
    recompile.

    Args:
      model: the layer to train; its output is the logits.
      train_data: ``(images, labels)`` on the host, e.g. ``uint8`` images; or, for
        data that does not fit in memory, a re-iterable of ``(images, labels)``
        batches (as grain or tf.data give them), run one jitted step per batch
        and iterated afresh every epoch (their order is the iterable's own).
      test_data: ``(images, labels)`` to evaluate after every epoch, or ``None``.
      optimizer: an optax optimiser.
      epochs: the total number of epochs (including those before a resume).
      batch_size: examples per step; each epoch drops its incomplete last batch.
      loss: per-example ``loss(logits, labels)``.
      seed: seeds the initialisation, the shuffling and the step keys.
      mode: ``"scan"``, ``"loop"`` or ``"auto"`` (see ``MODES``); both
        give the same numbers.
      preprocess: maps a raw batch to model inputs, inside ``jit``.
      augment: ``augment(key, inputs)`` applied in training, or ``None``.
      out: the output folder, or ``None`` to write nothing.
      resume: continue from the latest checkpoint in ``OUT/checkpoints``
        (start afresh when there is none).
      keep: how many checkpoints to keep.
      config: a JSON-serialisable dict stored in every checkpoint (e.g. the
        command-line settings), returned by ``checkpoint.read_metadata``.
      eval_batch_size: examples per evaluation call.
      progress: show a tqdm progress bar and one line per epoch.
      mesh: the devices to train on, a mesh with a ``"data"`` axis
        ([`funcnn.distributed.data_mesh`][funcnn.distributed.data_mesh]); ``None`` for every device.
      shard_params: split the parameters and optimiser state along the
        ``"data"`` axis too (each device keeps a slice of every large leaf),
        for models that do not fit one device; same numbers as replicated.
      callbacks: more [`funcnn.train.Callback`][funcnn.train.Callback] s, called in order.
      trainable: the parameters to train, the others frozen (bit for bit as they
        start, with no optimiser state): a pattern or patterns of their labels
        ([`funcnn.labels.matching`][funcnn.labels.matching], e.g. ``"*Dense/*"``), a predicate on a
        label, or a mask of the parameters' structure; ``None`` trains all.
      initial: ``(params, model_state)`` to start from instead of the model's
        initialisation (fine-tuning a trained model); a resumed run continues
        from its checkpoint instead.

    Returns:
      The final state and the per-epoch history.

    Raises:
      NonFiniteLossError: a step's loss was NaN, infinite or above ``DIVERGENCE_BOUND`` (1e6),
        or (with ``out``) the state holds a non-finite value; no checkpoint is written for
        that epoch, so the last good one stays the latest.
      FileExistsError: ``OUT`` already holds checkpoints and ``resume`` is false.
      FolderInUseError: another process writes ``OUT``.
      WriteError: a file under ``OUT`` could not be written; older checkpoints stay intact.
      CheckpointDamagedError: on a resume, ``OUT`` holds damaged checkpoints and none intact.
      CheckpointMismatchError: on a resume, the checkpoint does not fit this model and optimiser.
      ValueError: ``mode`` is not one of ``MODES``.
      LayerConfigError: a bad argument, before any step: ``model`` is not a layer, ``optimizer``
        not an optax optimiser, ``epochs``, ``batch_size``, ``eval_batch_size`` or ``keep`` not a
        positive integer, ``seed`` not a non-negative one, ``shard_params`` not a bool, ``mesh``
        not a mesh with a ``"data"`` axis; ``batch_size`` does not divide over the mesh's devices
        or exceeds the training images; the data are not ``(images, labels)`` arrays of one
        length with integer labels, or labels lie outside ``[0, number of model outputs)``;
        ``train_data`` is a one-shot iterator, holds no batches, or is batches with
        ``mode="scan"``; a callback has none of the hooks. Also on a resume with another seed
        or batch size than the checkpoint's.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    model = checks.layer("fit", "argument `model`", model)
    checks.optimizer("fit", optimizer)
    epochs = checks.setting("fit", "epochs", epochs)
    batch_size = checks.setting("fit", "batch_size", batch_size)
    seed = checks.setting("fit", "seed", seed)
    eval_batch_size = checks.positive_int("fit", "eval_batch_size", eval_batch_size)
    shard_params = checks.boolean("fit", "shard_params", shard_params)
    mesh = distributed.data_mesh() if mesh is None else distributed.check_mesh("fit", mesh)
    distributed.check_divisible("fit", batch_size, mesh)
    batches = _batch_iterable(train_data, mode)
    if batches is None:
        images, labels = checks.labelled_data("fit", "train_data", train_data)
        if batch_size > len(images):
            raise LayerConfigError(
                f"fit: argument `batch_size` {batch_size} exceeds the {len(images)} training images"
            )
        steps = len(batch_indices(seed, 0, len(images), batch_size))
    else:
        first = next(iter(batches), None)
        if first is None:
            raise LayerConfigError("fit: argument `train_data` holds no batches")
        images, labels = checks.labelled_data("fit", "train_data batch 0", first)
        steps = len(batches) if hasattr(batches, "__len__") else None
    input_shape = (-1, *jax.eval_shape(preprocess, images[:1]).shape[1:])
    num_classes = model_output_shape(model, input_shape)[-1]
    if trainable is not None:
        frozen = jax.tree.map(operator.not_, trainable_mask(model, input_shape, trainable))
        optimizer = freeze(optimizer, frozen)
    if batches is None:
        checks.label_range("fit", "train_data", labels, num_classes)
    if test_data is not None:
        checks.label_range(
            "fit", "test_data", checks.labelled_data("fit", "test_data", test_data)[1], num_classes
        )
    callbacks = _callbacks(out, resume, keep, config, progress, callbacks)
    shapes = abstract_train_state(model, optimizer, input_shape)
    shardings = distributed.state_shardings(mesh, shapes, shard_params)
    template = jax.tree.map(
        lambda leaf, sharding: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding),
        shapes,
        shardings,
    )
    start = TrainStart(template, None, [], epochs, steps, batch_size, seed)
    stopped = False  # a callback's StopTraining at the start: a resumed run that had already stopped
    try:
        for callback in callbacks:
            try:
                resumed = callback.on_train_begin(start)
            except StopTraining:
                stopped = True
                continue
            if resumed is not None:
                start = start._replace(state=resumed[0], history=list(resumed[1]))
        state, history = start.state, start.history
        if state is None:
            state = init_train_state(
                model, optimizer, jax.random.key(seed), input_shape, shardings=shardings, initial=initial
            )
        if batches is not None:
            mode = "loop"
        else:  # every device holds the whole data set; every process must run the same mode
            copies = len(mesh.local_devices) if mesh.devices.flat[0].platform == "cpu" else 1
            mode = distributed.same_in_every_process(
                choose_mode(mode, copies * (images.nbytes + labels.nbytes), mesh.local_devices[0]), MODES
            )
        compiled = compiled_epoch_or_step(
            model, loss, optimizer, preprocess, augment, mode, mesh, shard_params
        )
        if batches is None:
            run_epoch = epoch_runner(compiled, images, labels, mode, mesh)
            plan = functools.partial(batch_indices, seed, n=len(images), batch_size=batch_size)
        else:
            run_epoch = batches_runner(compiled, batches, num_classes, mesh)
            plan = lambda epoch: None  # noqa: E731 (the batches plan themselves)

        def evaluate_test(state: TrainState) -> dict[str, float | None]:
            if test_data is None:
                return {"loss": None, "accuracy": None}
            return evaluate(
                model, state.params, state.model_state, *test_data,
                batch_size=eval_batch_size, loss=loss, preprocess=preprocess, mesh=mesh,
            )  # fmt: skip

        def on_steps(steps: int, metrics: Any) -> None:
            interrupts.raise_pending()  # a stop signal whose first raise was lost stops the run here
            for callback in callbacks:
                callback.on_steps(steps, metrics)

        epochs_run = train_epochs(
            run_epoch,
            state,
            first_epoch=len(history),
            epochs=len(history) if stopped else epochs,
            plan=plan,
            batch_size=batch_size,
            evaluate_test=evaluate_test,
            on_progress=on_steps,
            mode=mode,
            devices=mesh.size,
        )
        for state, record in epochs_run:
            history.append(record)
            if _epoch_end(callbacks, state, history):
                break
        for callback in callbacks:
            callback.on_train_end(state, history)
    except BaseException as error:
        _close(callbacks, error)
        raise
    _close(callbacks, None)
    return FitResult(state, history)


def _close(callbacks: Sequence[Callback], error: BaseException | None) -> None:
    """Call every callback's ``close(error)``, each even when one before it fails; then raise the
    first failure, unless ``error`` is already on its way."""
    failures = []
    for callback in callbacks:
        try:
            callback.close(error)
        except BaseException as failure:  # re-raised below
            failures.append(failure)
    if failures and error is None:
        raise failures[0]


def _callbacks(
    out: str | os.PathLike | None,
    resume: bool,
    keep: int,
    config: dict[str, Any] | None,
    progress: bool,
    callbacks: Sequence[Callback],
) -> list[Callback]:
    """The shortcuts' callbacks ([`Checkpoints`][funcnn.train.callbacks.Checkpoints] for ``out``,
    [`ProgressBar`][funcnn.train.callbacks.ProgressBar] for
    ``progress``), then ``callbacks``, checked."""
    made: list[Callback] = []
    if out is not None:
        made.append(Checkpoints(out, resume=resume, keep=keep, config=config))
    if progress:
        made.append(ProgressBar())
    if not isinstance(callbacks, Sequence) or isinstance(callbacks, str):
        raise LayerConfigError(
            "fit: argument `callbacks` must be a sequence of funcnn.train.Callback, "
            f"got {type(callbacks).__name__}"
        )
    return [*made, *(as_callback(f"fit: argument `callbacks`[{i}]", c) for i, c in enumerate(callbacks))]


def _epoch_end(callbacks: Sequence[Callback], state: TrainState, history: list[dict[str, Any]]) -> bool:
    """Call every callback's ``on_epoch_end``; whether one asked to stop
    ([`StopTraining`][funcnn.train.callbacks.StopTraining])."""
    stop = False
    for callback in callbacks:
        try:
            callback.on_epoch_end(state, history)
        except StopTraining:
            stop = True
    return stop
