"""The training settings, one table: name, default, kind (how to parse and what is valid), help.

From [`SETTINGS`][funcnn.settings.SETTINGS] come the command line's options (``funcnn.cli.build_parser``),
the check of the settings stored with a run ([`check_stored`][funcnn.settings.check_stored]), the merge on
``--resume`` ([`merge`][funcnn.settings.merge]), and ``fit``'s checks of the same arguments
(``epochs``, ``batch_size``, ``seed``: [`funcnn.checks.setting`][funcnn.checks.setting]). Light: no JAX; the
name tuples are pinned to the library's by a test.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Mapping
from numbers import Integral
from typing import Any, NamedTuple

MODEL_NAMES = ("fashion_mnist_cnn", "seed_cnn", "lenet5", "small_resnet", "resnet20")
"""``funcnn.models.MODELS``'s names (pinned by a test), so the parser needs no JAX."""

OPTIMIZER_NAMES = ("adam", "sgd", "adamw")
"""``funcnn.train.OPTIMIZERS`` (pinned by a test)."""

PRECISION_NAMES = ("bf16", "fp32")
"""``funcnn.train.PRECISIONS``'s names (pinned by a test)."""

MODE_NAMES = ("auto", "scan", "loop")
"""``funcnn.train.MODES`` (pinned by a test)."""

SCHEDULES = ("cosine", "constant")
"""The learning-rate schedules of ``--schedule``."""


class UsageError(ValueError):
    """A bad combination of command-line arguments."""


class SettingsConflictError(ValueError):
    """The settings stored with a run disagree with each other (``run.json`` against its
    checkpoint), or cannot be used; the message names the file, the setting and both values."""


def _is_int(value: Any) -> bool:
    """A Python or NumPy integer, not a bool."""
    return isinstance(value, Integral) and not isinstance(value, bool)


class Kind(NamedTuple):
    """What a setting's values are: ``what`` in words, ``valid`` for a value, ``parse`` for text,
    and the ``choices`` when they are names.

    Attributes:
      what: the valid values in words, for messages (``"a positive integer"``).
      valid: ``valid(value) -> bool``, whether a value (stored, or given to ``fit``) is valid.
      parse: turns an option's text into a value, as ``argparse``'s ``type=``; it raises
        ``argparse.ArgumentTypeError`` or ``ValueError`` on invalid text (plain ``str`` for names,
        which ``choices`` checks, and for kinds that are not parsed from text).
      choices: the valid names, for ``argparse``'s ``choices=``; ``None`` when the values are not names.
    """

    what: str
    valid: Callable[[Any], bool]
    parse: Callable[[str], Any]
    choices: tuple[str, ...] | None = None


def _parser(kind: type, what: str, valid: Callable[[Any], bool]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
        if not valid(value):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text}")
        return value

    return parse


def _patterns(value: Any) -> bool:
    """Text of one or more non-empty patterns separated by commas."""
    return isinstance(value, str) and all(part.strip() for part in value.split(","))


def _kind(kind: type, what: str, valid: Callable[[Any], bool]) -> Kind:
    return Kind(what, valid, _parser(kind, what, valid))


def choice(names: tuple[str, ...]) -> Kind:
    """One of ``names``.

    Args:
      names: the valid values.

    Returns:
      A [`Kind`][funcnn.settings.Kind] valid for exactly ``names``, which parses text as itself
      (``argparse`` checks the ``choices``).
    """
    return Kind(f"one of {', '.join(names)}", lambda v: v in names, str, names)


POSITIVE_INT = _kind(int, "a positive integer", lambda v: _is_int(v) and v >= 1)
"""An integer >= 1 (``epochs``, ``batch_size``)."""
NON_NEGATIVE_INT = _kind(int, "a non-negative integer", lambda v: _is_int(v) and v >= 0)
"""An integer >= 0 (``seed``)."""
POSITIVE_FLOAT = _kind(
    float,
    "a positive finite number",
    lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0,
)
"""A finite number > 0 (``lr``)."""
BOOLEAN = Kind("True or False", lambda v: isinstance(v, bool), str)
"""``True`` or ``False`` (``augment``: ``--augment`` / ``--no-augment`` on the command line)."""
OPTIONAL_POSITIVE_INT = Kind("a positive integer or null", lambda v: v is None or POSITIVE_INT.valid(v), int)
"""An integer >= 1 or ``None`` (``limit``, ``num_classes``)."""
OPTIONAL_DECAY = Kind(
    "a number between 0 and 1 (exclusive) or null",
    lambda v: v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < 1),
    _parser(float, "a number between 0 and 1 (exclusive)", lambda v: 0 < v < 1),
)
"""A decay in ``(0, 1)`` or ``None`` (``ema``)."""
OPTIONAL_TEXT = Kind("a path or null", lambda v: v is None or isinstance(v, str), str)
"""A path as text or ``None`` (``data``, stored)."""
INPUT_SHAPE = Kind(
    "[-1, H, W, C] (or 1-D/3-D)",
    lambda v: (
        isinstance(v, list)
        and len(v) in (3, 4, 5)
        and v[0] == -1
        and all(POSITIVE_INT.valid(d) for d in v[1:])
    ),
    str,
)
"""The model's input shape with an unknown batch, ``[-1, H, W, C]`` (stored, from the data)."""

PATTERNS = Kind(
    "shell-style patterns of parameter labels, separated by commas, or null",
    lambda v: v is None or _patterns(v),
    _parser(str, "shell-style patterns of parameter labels, separated by commas", lambda v: _patterns(v)),
)
"""Patterns of parameter labels ([`funcnn.labels.matching`][funcnn.labels.matching]), as one text:
``"*Conv/*,*BatchNorm/*"``."""


class Setting(NamedTuple):
    """One training setting.

    Attributes:
      name: as stored and as ``fit``'s argument; the option is ``--name`` with ``-`` for ``_``.
      default: its value when neither the command line nor the run gives one.
      kind: how it is parsed and what is valid.
      help: the option's help (``None``: not an option, derived from the data).
    """

    name: str
    default: Any
    kind: Kind
    help: str | None

    @property
    def option(self) -> str:
        """The command-line option."""
        return "--" + self.name.replace("_", "-")


SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in (
        Setting("model", "fashion_mnist_cnn", choice(MODEL_NAMES), "the model"),
        Setting("epochs", 10, POSITIVE_INT, "epochs in all (a larger one on --resume extends the run)"),
        Setting("batch_size", 128, POSITIVE_INT, "examples per step"),
        Setting("optimizer", "adam", choice(OPTIMIZER_NAMES), "the optax optimiser"),
        Setting("lr", 1e-3, POSITIVE_FLOAT, "peak learning rate"),
        Setting("schedule", "cosine", choice(SCHEDULES), "learning-rate schedule"),
        Setting("seed", 0, NON_NEGATIVE_INT, "seeds the initialisation, shuffling and step keys"),
        Setting("precision", "fp32", choice(PRECISION_NAMES), "compute dtype"),
        Setting("augment", False, BOOLEAN, "random crop and flip"),
        Setting("limit", None, OPTIONAL_POSITIVE_INT, "use only the first N training images"),
        Setting("num_classes", None, OPTIONAL_POSITIVE_INT, "model outputs; default: the largest label + 1"),
        Setting(
            "freeze",
            None,
            PATTERNS,
            "parameters to keep as they start, by label patterns separated by commas (e.g. "
            "'serial/[0-5]:*' or '*Conv/*'); `funcnn summary --labels` lists the labels",
        ),
        Setting(
            "init_from",
            None,
            OPTIONAL_TEXT,
            "start from the parameters of another run's newest intact checkpoint (a run folder), or "
            "of a PyTorch state_dict (.pt/.pth, the same layers in order), instead of a random one",
        ),
        Setting(
            "ema",
            None,
            OPTIONAL_DECAY,
            "keep an exponential moving average of the parameters with this decay (e.g. 0.999) and "
            "evaluate it every epoch (ema_test_loss, ema_test_accuracy in metrics.jsonl)",
        ),
        Setting(
            "patience",
            None,
            OPTIONAL_POSITIVE_INT,
            "stop early once the test accuracy has not improved for N epochs (may change on --resume)",
        ),
        Setting(
            "keep_best",
            True,
            BOOLEAN,
            "keep the checkpoint of the best test accuracy besides the last 3, never pruned",
        ),
        Setting("tensorboard", False, BOOLEAN, "write TensorBoard scalars to OUT/tensorboard"),
        Setting("data", None, OPTIONAL_TEXT, None),
        Setting("input_shape", None, INPUT_SHAPE, None),
    )
}
"""Every setting a run stores (in ``run.json`` and each checkpoint); those with a ``help`` are options."""

TRAIN_DEFAULTS: dict[str, Any] = {s.name: s.default for s in SETTINGS.values() if s.help is not None}
"""The defaults of the command line's training settings."""


def check_stored(source: str, config: Any) -> dict[str, Any]:
    """The settings stored with a run (``run.json``, or a checkpoint's), checked one by one.

    Args:
      source: what they were read from (a file's name), for the error message.
      config: the stored settings, name to value.

    Returns:
      Every setting of [`SETTINGS`][funcnn.settings.SETTINGS], in its order, with its stored value;
      those of [`ADDED_SINCE_0_2`][funcnn.settings.ADDED_SINCE_0_2] that a run of funcnn 0.2 lacks
      get their defaults, and names that are not settings are dropped.

    Raises:
      SettingsConflictError: ``config`` is not a non-empty mapping, or a setting is missing or has a
        value its [`Kind`][funcnn.settings.Kind] does not allow; names ``source``.
    """
    if not isinstance(config, Mapping) or not config:
        raise SettingsConflictError(f"{source} holds no settings of `funcnn train`")
    config = {name: SETTINGS[name].default for name in ADDED_SINCE_0_2 if name not in config} | dict(config)
    bad = [
        f"{name}={config[name]!r} (must be {setting.kind.what})" if name in config else f"{name}=<missing>"
        for name, setting in SETTINGS.items()
        if name not in config or not setting.kind.valid(config[name])
    ]
    if bad:
        raise SettingsConflictError(f"{source} holds settings this funcnn cannot use: {', '.join(bad)}")
    return {name: config[name] for name in SETTINGS}


ADDED_SINCE_0_2 = ("freeze", "init_from", "ema", "patience", "keep_best", "tensorboard")
"""Settings that runs written by funcnn 0.2 lack; such a run has their defaults."""

MAY_CHANGE = ("data", "patience", "keep_best", "tensorboard")
"""Settings a run may go on with changed: ``data`` (the same data moved; its shapes are checked
against the model), and those that decide only when to stop, which checkpoints to keep and
what to log, none of which is in the training state (``ema`` is: it adds to the optimiser state)."""


def _may_follow(name: str, newer: Any, older: Any) -> bool:
    """Whether a run may go on with ``newer`` after ``older``: a larger ``epochs`` (an extension),
    or any change of a setting in [`MAY_CHANGE`][funcnn.settings.MAY_CHANGE]."""
    return (name == "epochs" and newer > older) or name in MAY_CHANGE


def merge(
    given: Mapping[str, Any],
    recorded: tuple[str, Mapping[str, Any]] | None = None,
    stored: tuple[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """A run's settings: the defaults, then the run's own, then those ``given`` on the command line.

    The run's own are ``run.json``'s when both exist (it may record an extension to
    more epochs), which must then agree with the checkpoint's in every other setting.
    A given setting may differ from the run's only by a larger ``epochs`` or in
    [`MAY_CHANGE`][funcnn.settings.MAY_CHANGE].

    Args:
      given: the settings given on the command line (only those given).
      recorded: ``(source, settings)`` from ``run.json``, or ``None``.
      stored: ``(source, settings)`` from the newest intact checkpoint, or ``None``.

    Returns:
      Every setting: the command line's training defaults
      ([`TRAIN_DEFAULTS`][funcnn.settings.TRAIN_DEFAULTS]), updated by the run's checked settings
      ([`check_stored`][funcnn.settings.check_stored]), then by ``given``. Without a run, the
      defaults and ``given`` only.

    Raises:
      SettingsConflictError: ``run.json`` and the checkpoint disagree, or either is unusable.
      UsageError: a given setting contradicts the run's (a smaller ``--epochs`` included).
    """
    runs = [(run[0], check_stored(*run)) for run in (recorded, stored) if run is not None]
    if len(runs) == 2:
        (file, newer), (step, older) = runs
        disagree = [
            f"{name} {newer[name]!r} (the checkpoint: {older[name]!r})"
            for name in SETTINGS
            if newer[name] != older[name] and not _may_follow(name, newer[name], older[name])
        ]
        if disagree:
            raise SettingsConflictError(
                f"{file} disagrees with {step}: {', '.join(disagree)}; restore {file}'s values, or delete "
                "it to resume with the checkpoint's"
            )
    if not runs:
        return dict(TRAIN_DEFAULTS) | dict(given)
    source, saved = runs[0]
    conflicts = [
        f"{SETTINGS[name].option} {value} ({source}: {saved[name]})"
        for name, value in given.items()
        if saved.get(name) != value and not _may_follow(name, value, saved[name])
    ]
    if conflicts:
        raise UsageError(f"cannot resume with different settings: {', '.join(conflicts)}")
    return dict(TRAIN_DEFAULTS) | saved | dict(given)
