"""What every hand-written rule shares: the ``grad`` switch, and cotangents typed as their primals.

A ``custom_vjp`` rule must return each cotangent with its primal's type, and
under JAX's sharding modes the type carries more than shape and dtype:

* **Explicit mesh axes** (``jax.make_mesh``'s default): a sharding is part of
  the type, and an op that contracts a sharded axis (``dL/dW = X^T G`` over a
  batch-sharded ``X``) must be told how its output is sharded.
* **Inside** ``shard_map``: a value *varies* over the mesh axes its inputs
  vary over; a parameter that enters unvaried (replicated) but whose
  cotangent is summed from batch-varying values must be summed over those
  axes, as JAX's own rules do (the transpose of the implicit ``pcast`` to
  varying is a ``psum``).

``cotangents_like`` does both, so the rules' arithmetic stays the
textbook equations.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
from jax import lax
from jax.sharding import AxisType, NamedSharding, PartitionSpec

from funcnn.core import default_grad


def resolve(grad: str | None) -> str:
    """``grad``, or for ``None`` the mode in force ([`funcnn.grad_mode`][funcnn.grad_mode]).

    ``grad`` was checked by [`funcnn.checks.grad_mode`][funcnn.checks.grad_mode] where the user gave it.
    """
    return default_grad() if grad is None else grad


def with_forward_mode_hint(custom: Callable) -> Callable:
    """``custom`` (a ``jax.custom_vjp`` function), whose forward-mode error also says how to get
    forward mode (``FORWARD_MODE_HINT``)."""

    @functools.wraps(custom)
    def hand_written(*args: Any, **kwargs: Any) -> Any:
        try:
            return custom(*args, **kwargs)
        except TypeError as error:
            if "forward-mode" not in str(error):
                raise
            raise TypeError(f"{error} {FORWARD_MODE_HINT}") from None

    return hand_written


FORWARD_MODE_HINT = (
    "funcnn's hand-written rules ran through jax.custom_vjp (grad='custom_vjp', or grad='custom' on a "
    "JAX without the primitive extension points), which is reverse mode only: for jax.jvp, jax.jacfwd, "
    "jax.linearize or jax.hessian, give the layer or op grad='custom' (the hand-written JVPs) or "
    "grad='autodiff', or build the whole model inside `with funcnn.grad_mode('autodiff'):`"
)
"""What the forward-mode error of a ``custom_vjp`` rule adds: how to get forward mode."""


def _varying_axes(x: jax.Array) -> frozenset:
    """The ``shard_map`` axes ``x`` varies over (empty outside ``shard_map``)."""
    aval = jax.typeof(x)
    manual = getattr(aval, "manual_axis_type", None)
    return manual.varying if manual is not None else frozenset(getattr(aval, "vma", ()))


def _on_mesh(sharding: Any, mesh: Any) -> Any:
    """``sharding``, or replicated on ``mesh`` for a value not placed on any mesh (parameters that
    were never put on the mesh enter the rule unsharded; their cotangent is summed to every device)."""
    return NamedSharding(mesh, PartitionSpec()) if sharding.mesh.empty else sharding


def _explicit_axes(arrays: tuple) -> tuple[Any, tuple[str, ...]]:
    """The mesh of the arrays' shardings and its Explicit axes (``(None, ())`` without a mesh or
    with Auto axes only)."""
    for x in arrays:
        mesh = jax.typeof(x).sharding.mesh
        if not mesh.empty:
            explicit = tuple(
                name
                for name, kind in zip(mesh.axis_names, mesh.axis_types, strict=True)
                if kind == AxisType.Explicit
            )
            return mesh, explicit
    return None, ()


def cotangents_like(rule: Callable[..., tuple], primals: tuple, *operands: Any) -> tuple:
    """``rule(*operands)``, the cotangents of ``primals`` (``None`` entries stay ``None``), typed as them.

    With Explicit mesh axes the rule runs with those axes made Auto
    (``jax.sharding.auto_axes``) and each cotangent comes out sharded as its
    primal: XLA's partitioner then inserts the all-reduce of ``dL/dW`` over the
    batch, as for Auto axes. Inside ``shard_map``, a cotangent that varies over
    axes its primal does not is ``psum``-ed over them.
    """
    present = tuple(p for p in primals if p is not None)
    mesh, explicit = _explicit_axes(present)
    if explicit:
        shardings = tuple(None if p is None else _on_mesh(jax.typeof(p).sharding, mesh) for p in primals)
        rule = jax.sharding.auto_axes(rule, axes=explicit, out_sharding=shardings)
    cotangents = rule(*operands)
    return tuple(
        None if primal is None else _sum_over_extra_axes(cotangent, primal)
        for cotangent, primal in zip(cotangents, primals, strict=True)
    )


def _sum_over_extra_axes(cotangent: jax.Array, primal: jax.Array) -> jax.Array:
    extra = _varying_axes(cotangent) - _varying_axes(primal)
    return lax.psum(cotangent, tuple(sorted(extra))) if extra else cotangent
