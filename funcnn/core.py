"""The layer protocol: a layer is a pure ``(init, apply)`` pair.

Modelled on optax's ``GradientTransformation``: a ``NamedTuple`` of two pure
functions whose call signatures are documented as ``typing.Protocol`` s.

>>> import jax, funcnn as fn
>>> layer = fn.Conv(8, (3, 3))
>>> out_shape, params, state = layer.init(jax.random.key(0), (-1, 28, 28, 1))
>>> out_shape
(-1, 26, 26, 8)
"""

from __future__ import annotations

from numbers import Integral
from typing import Any, NamedTuple, Protocol

import jax

Shape = tuple[int, ...]
"""An array shape including the leading batch dimension, which may be ``-1``."""

Params = Any
"""A pytree of trainable arrays (``()`` when a layer has none)."""

State = Any
"""A pytree of non-trained arrays, e.g. batch-norm running statistics."""


class LayerConfigError(ValueError):
    """Bad layer configuration or input, raised at ``init`` or trace time.

    Messages name the layer, the argument and the shapes involved, e.g.
    ``"Conv: argument `x` has 3 channels but the kernel expects 1 (x.shape=(2, 8, 8, 3))"``.
    """


class InitFn(Protocol):
    """Computes output shape, parameters and state, without running the model."""

    def __call__(self, key: jax.Array, input_shape: Shape) -> tuple[Shape, Params, State]:
        """Initialise a layer.

        Args:
          key: a ``jax.random`` key for parameter initialisation.
          input_shape: the input's shape, batch first; the batch may be ``-1``.

        Returns:
          ``(output_shape, params, state)``: the output shape computed
          analytically (no tracing), and the pytrees of trainable parameters
          and of non-trained state (``()`` when there are none).
        """


class ApplyFn(Protocol):
    """Applies a layer; pure, so safe under ``jit``, ``vmap``, ``grad`` and ``scan``."""

    def __call__(
        self,
        params: Params,
        state: State,
        x: Any,
        *,
        key: jax.Array | None = None,
        train: bool = False,
    ) -> tuple[Any, State]:
        """Apply a layer.

        Args:
          params: the parameters returned by ``init`` (or trained from them).
          state: the state returned by ``init`` or by a previous ``apply``.
          x: the input array (or tuple of arrays for ``parallel`` / ``fan_in_*``).
          key: a ``jax.random`` key, needed only by random layers in training.
          train: training mode (batch statistics, dropout) when ``True``.

        Returns:
          ``(y, new_state)``. A layer without state returns ``state`` unchanged.
        """


class Layer(NamedTuple):
    """A layer: a pair of pure functions.

    Attributes:
      init: ``init(key, input_shape) -> (output_shape, params, state)``.
      apply: ``apply(params, state, x, *, key=None, train=False) -> (y, new_state)``.
    """

    init: InitFn
    apply: ApplyFn


def check_rank(layer: str, argument: str, shape: Shape, ranks: tuple[int, ...]) -> None:
    """Raise ``LayerConfigError`` unless ``len(shape)`` is one of ``ranks``."""
    if len(shape) not in ranks:
        expected = " or ".join(str(r) for r in ranks)
        raise LayerConfigError(
            f"{layer}: argument `{argument}` must have rank {expected}, "
            f"but has shape {tuple(shape)} (rank {len(shape)})"
        )


def check_positive(layer: str, argument: str, values: Any) -> None:
    """Raise ``LayerConfigError`` unless every entry of ``values`` is a positive int."""
    items = tuple(values) if isinstance(values, (tuple, list)) else (values,)
    if not all(isinstance(v, Integral) and not isinstance(v, bool) and v > 0 for v in items):
        raise LayerConfigError(f"{layer}: argument `{argument}` must be positive integers, got {values!r}")


def check_channels(layer: str, shape: Shape, rank: int, channels: int) -> None:
    """Check at trace time that ``apply``'s input has ``rank`` dims and ``channels`` channels.

    ``init`` fixed the parameters for ``channels`` input channels; an input of
    another width is a mismatch between ``init`` and ``apply``.
    """
    check_rank(layer, "x", shape, (rank,))
    if shape[-1] != channels:
        raise LayerConfigError(
            f"{layer}: argument `x` has {shape[-1]} channels (x.shape={tuple(shape)}) but the "
            f"layer was initialised for {channels} input channels"
        )
