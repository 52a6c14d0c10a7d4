"""The layer protocol: a layer is a pure ``(init, apply)`` pair.

Modelled on optax's ``GradientTransformation``: a ``NamedTuple`` of two pure
functions whose call signatures are documented as ``typing.Protocol`` s.

Examples:
    >>> import jax, funcnn as fn
    >>> layer = fn.Conv(8, (3, 3))
    >>> out_shape, params, state = layer.init(jax.random.key(0), (-1, 28, 28, 1))
    >>> out_shape
    (-1, 26, 26, 8)
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
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
    The checks live in [`funcnn.checks`][funcnn.checks].
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

    Its name and, for combinators, its children are kept beside it, in
    [`funcnn.identity`][funcnn.identity]; any ``Layer(init, apply)`` pair composes.

    A layer is a pytree without leaves (its two functions are static data),
    so it can be an argument of a jitted function: ``jax.jit(lambda layer,
    params, state, x: layer.apply(params, state, x)[0])`` traces once per
    layer. It is immutable, so ``copy.copy`` and ``copy.deepcopy`` return it
    as is; it cannot be pickled (its functions are closures): save its
    params and state with [`funcnn.checkpoint`][funcnn.checkpoint] and rebuild it from code.

    Attributes:
      init: ``init(key, input_shape) -> (output_shape, params, state)``.
      apply: ``apply(params, state, x, *, key=None, train=False) -> (y, new_state)``.
    """

    init: InitFn
    apply: ApplyFn

    def __copy__(self) -> Layer:
        return self

    def __deepcopy__(self, memo: dict) -> Layer:
        return self

    def __reduce__(self) -> Any:
        raise TypeError(
            "Layer: a model is a pair of functions (closures) and cannot be pickled; save its params and "
            "state (funcnn.checkpoint.save, or orbax) and rebuild the model from code, e.g. "
            "fn.models.<name>()"
        )


jax.tree_util.register_pytree_node(
    Layer, lambda layer: ((), tuple(layer)), lambda functions, _: Layer(*functions)
)


GRAD_MODES = ("custom", "custom_vjp", "autodiff")
"""The ways a layer or op differentiates: its hand-written rules (the VJP for reverse mode, the JVP
for forward mode), the same VJP through ``jax.custom_vjp`` (reverse mode only), or JAX's autodiff of
its forward pass."""

_DEFAULT_GRAD: contextvars.ContextVar[str] = contextvars.ContextVar("funcnn_default_grad", default="custom")


def default_grad() -> str:
    """The gradient mode a layer built now (or an op called now) takes when given ``grad=None``.

    Returns:
      One of ``GRAD_MODES``: the ``mode`` of the innermost enclosing
      [`grad_mode`][funcnn.core.grad_mode] block, ``"custom"`` outside any.
    """
    return _DEFAULT_GRAD.get()


@contextlib.contextmanager
def grad_mode(mode: str) -> Iterator[None]:
    """Within the block, layers built and ops called without an explicit ``grad`` use ``mode``.

    ``"custom"`` (the default) builds a whole model on the hand-written rules:
    the VJPs for reverse mode and the JVPs for forward mode (``jax.jvp``,
    ``jax.jacfwd``, ``jax.linearize``); ``"custom_vjp"`` on the same VJPs
    through ``jax.custom_vjp``, which has no forward mode; ``"autodiff"`` on
    JAX's own derivatives. A layer keeps the mode it was built with; an
    explicit ``grad=`` wins.

    Args:
      mode: ``"custom"``, ``"custom_vjp"`` or ``"autodiff"`` (one of ``GRAD_MODES``).

    Yields:
      Nothing (``None``); on leaving the block the previous mode is restored, also on an exception.

    Raises:
      LayerConfigError: when ``mode`` is not one of ``GRAD_MODES``, on entering the ``with`` block.

    Examples:
        >>> import jax, jax.numpy as jnp, funcnn as fn
        >>> with fn.grad_mode("autodiff"):
        ...     model = fn.models.lenet5()
        >>> _, params, state = model.init(jax.random.key(0), (-1, 28, 28, 1))
        >>> f = lambda x: model.apply(params, state, x)[0]
        >>> x = jnp.ones((1, 28, 28, 1))
        >>> jax.jvp(f, (x,), (x,))[1].shape
        (1, 10)
    """
    if mode not in GRAD_MODES:
        raise LayerConfigError(f"grad_mode: argument `mode` must be one of {GRAD_MODES}, got {mode!r}")
    token = _DEFAULT_GRAD.set(mode)
    try:
        yield
    finally:
        _DEFAULT_GRAD.reset(token)
