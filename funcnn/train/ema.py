"""An exponential moving average (EMA) of the parameters, kept in the optimiser state.

[`with_ema`][funcnn.train.ema.with_ema] wraps an optax optimiser; after each update its state holds

    ema_t = decay * ema_{t-1} + (1 - decay) * params_t,    ema_0 = params_0,

where ``params_t`` are the parameters after step ``t``. The average starts at the
initial parameters (as Keras' and PyTorch's ``AveragedModel`` do), so it is always a
weighted mean of parameters actually reached and needs no bias correction (optax's
``ema(debias=True)`` starts at zero and divides by ``1 - decay**t`` instead): after ``t``
steps the initial parameters still weigh ``decay**t``, so choose ``decay`` with
``1 / (1 - decay)`` (the average's horizon, in steps) well below the steps of a run.

Living in ``TrainState.opt_state``, the average is checkpointed with the rest of the state
and a resumed run continues it bit for bit; under ``fit(..., shard_params=True)`` it is
split over the devices like the parameters it averages (same shapes, same placement).
[`ema_params`][funcnn.train.ema.ema_params] takes it out of a train state, and
[`funcnn.train.EMA`][funcnn.train.EMA] evaluates
it after every epoch.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from funcnn import checks
from funcnn.core import LayerConfigError, Params


class EmaState(NamedTuple):
    """The state of [`with_ema`][funcnn.train.ema.with_ema]: the wrapped optimiser's state and the average.

    Attributes:
      inner: the wrapped optimiser's state, updated as that optimiser alone would.
      ema: the moving average, a tree of the parameters' structure; each floating leaf in its
        parameter's dtype, a non-floating leaf a copy of the parameter.
    """

    inner: Any
    ema: Params


def with_ema(optimizer: optax.GradientTransformation, decay: float) -> optax.GradientTransformation:
    """``optimizer``, also keeping an exponential moving average of the parameters.

    The updates are ``optimizer``'s, unchanged; the state is [`EmaState`][funcnn.train.ema.EmaState].

    Args:
      optimizer: an optax optimiser.
      decay: the weight of the previous average, in ``(0, 1)`` (e.g. 0.999).

    Returns:
      The optimiser, an ``optax.GradientTransformation``; its ``update`` needs ``params``.

    Raises:
      LayerConfigError: at construction, ``optimizer`` is not an optax optimiser (no callable
        ``init`` and ``update``) or ``decay`` is not a real number in ``(0, 1)``; from ``update``,
        ``params`` is not given.

    Examples:
        >>> import jax.numpy as jnp, optax
        >>> opt = with_ema(optax.sgd(1.0), decay=0.5)
        >>> params = {"w": jnp.zeros(2)}
        >>> state = opt.init(params)
        >>> updates, state = opt.update({"w": -jnp.ones(2)}, state, params)  # params become 1
        >>> state.ema["w"].tolist()
        [0.5, 0.5]
    """
    checks.optimizer("with_ema", optimizer)
    decay = checks.real("with_ema", "decay", decay, low=0.0, high=1.0, low_open=True, high_open=True)

    def init(params: Params) -> EmaState:
        return EmaState(optimizer.init(params), jax.tree.map(jnp.array, params))

    def update(updates: Any, state: EmaState, params: Params | None = None) -> tuple[Any, EmaState]:
        if params is None:
            raise LayerConfigError("with_ema: `update` needs `params` to average")
        updates, inner = optimizer.update(updates, state.inner, params)
        new_params = optax.apply_updates(params, updates)
        ema = jax.tree.map(lambda old, new: _average(decay, old, new), state.ema, new_params)
        return updates, EmaState(inner, ema)

    return optax.GradientTransformation(init, update)


def _average(decay: float, old: jax.Array, new: jax.Array) -> jax.Array:
    """``decay * old + (1 - decay) * new`` in ``old``'s dtype; a non-float leaf is copied."""
    if not jnp.issubdtype(old.dtype, jnp.inexact):
        return new
    return (decay * old + (1 - decay) * new.astype(old.dtype)).astype(old.dtype)


def ema_params(state: Any) -> Params:
    """The moving average of the parameters in a train state's optimiser state.

    Leaves that the optimiser does not see (frozen by ``fit(..., trainable=...)``) never change,
    so their average is the parameters themselves.

    Args:
      state: a [`funcnn.train.TrainState`][funcnn.train.TrainState] trained with a
        [`with_ema`][funcnn.train.ema.with_ema] optimiser.

    Returns:
      A tree of the parameters' structure.

    Raises:
      LayerConfigError: the optimiser state holds no [`EmaState`][funcnn.train.ema.EmaState].
    """
    found = [
        node
        for node in jax.tree.leaves(state.opt_state, is_leaf=lambda n: isinstance(n, EmaState))
        if isinstance(node, EmaState)
    ]
    if not found:
        raise LayerConfigError(
            "ema_params: the optimiser state holds no moving average; train with "
            "funcnn.train.with_ema(optimizer, decay)"
        )
    return jax.tree.map(
        lambda param, average: param if isinstance(average, optax.MaskedNode) else average,
        state.params,
        found[0].ema,
    )
