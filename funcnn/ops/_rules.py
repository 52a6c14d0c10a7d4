"""One hand-written rule, two JAX mechanisms: ``jax.custom_vjp``, and a JVP with a hand-written transpose.

Every op with a hand-written rule gives four functions of its static
configuration ``c`` (hashable) and its primal operands:

* ``forward(c, *primals) -> y``, the forward equations;
* ``fwd(c, *primals) -> (y, residuals)``, the forward pass and what the rules read;
* ``bwd(c, residuals, g) -> cotangents``, the hand-written VJP ``g -> J^T g``
  (one cotangent per primal, ``None`` for one that takes none);
* ``jvp(c, residuals, tangents) -> dy``, the forward equations differentiated
  (``J t``), linear in the tangents (``None`` for a zero tangent).

``HandWritten`` builds two functions from them:

* ``custom_vjp``, ``jax.custom_vjp(forward)`` with ``fwd`` and ``bwd``, the
  textbook mechanism: reverse mode only.
* ``primitive``, ``jax.custom_jvp(forward)`` whose JVP returns ``y`` from
  ``fwd`` and ``dy = L(residuals, tangents)``, where ``L`` is the primitive
  ``hand_written_linear``: evaluated by ``jvp``, **transposed by** ``bwd``.

Reverse mode in JAX is linearise, then transpose: ``jax.grad`` runs the JVP
with unknown tangents, which records ``L`` in the linear program, then
transposes that program, which calls ``L``'s transpose, the hand-written
``bwd``. Forward mode (``jvp``, ``jacfwd``, ``linearize``) evaluates ``L`` with
``jvp``. Since ``L`` is a primitive, ``jax.checkpoint``, ``lax.scan``,
``vmap`` and ``shard_map`` keep it whole, so reverse mode runs ``bwd``
under each of them. ``vmap`` of ``L`` is ``L`` on ``jax.vmap``-ed rules (its
transpose sums the cotangent of an operand that was not batched), and the
JVP of ``L`` itself (forward over forward) is JAX's JVP of ``jvp``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import tree_util

from funcnn.ops import _grad

try:  # the extension points a primitive needs: jax.extend and the interpreters' rule tables
    from jax.extend.core import Primitive, unmapped_aval
    from jax.interpreters import ad, batching, mlir

    PRIMITIVES = all(
        hasattr(module, name)
        for module, name in (
            (ad, "primitive_transposes"),
            (ad, "primitive_jvps"),
            (ad, "is_undefined_primal"),
            (ad, "Zero"),
            (batching, "primitive_batchers"),
            (mlir, "register_lowering"),
            (mlir, "lower_fun"),
        )
    )
except ImportError:  # pragma: no cover - an older JAX
    PRIMITIVES = False
"""Whether this JAX lets funcnn define the linear primitive; without it ``grad="custom"`` is
the ``custom_vjp`` mechanism (reverse mode only)."""


@dataclasses.dataclass(frozen=True)
class Level:
    """One ``vmap`` of ``L``: each operand's batch axis (0 or ``None``) and the map's size."""

    dims: tuple[int | None, ...]
    size: int


@dataclasses.dataclass(frozen=True)
class Linear:
    """``L``'s parameters: the op's rules, its static configuration, the operands' layout.

    The operands are the residuals' leaves, then one array per tangent that is not
    zero (``present`` marks which of the primals have one).
    """

    name: str
    jvp: Callable
    bwd: Callable
    static: Any
    residuals: Any  # the residuals' tree structure
    present: tuple[bool, ...]
    out: Any  # dy's aval, unbatched
    levels: tuple[Level, ...] = ()

    def unbatched_apply(self, *operands: jax.Array) -> jax.Array:
        """``jvp`` on one example: ``dy = J t`` (``None`` for the zero tangents)."""
        residuals, tangents = self._split(operands)
        return self.jvp(self.static, residuals, tangents)

    def unbatched_transpose(self, *operands: Any) -> list[jax.Array]:
        """``bwd`` on one example: the cotangents of the present tangents, from ``g``."""
        *operands, g = operands
        residuals = tree_util.tree_unflatten(self.residuals, operands)
        cotangents = self.bwd(self.static, residuals, g)
        return [c for c, present in zip(cotangents, self.present, strict=True) if present]

    def _split(self, operands: tuple) -> tuple[Any, tuple]:
        count = self.residuals.num_leaves
        residuals = tree_util.tree_unflatten(self.residuals, operands[:count])
        given = iter(operands[count:])
        tangents = tuple(next(given) if present else None for present in self.present)
        return residuals, tangents

    def apply(self, *operands: jax.Array) -> jax.Array:
        """``dy``, with each ``vmap`` level applied by ``jax.vmap``."""
        function = self.unbatched_apply
        for level in self.levels:
            function = jax.vmap(function, in_axes=level.dims, axis_size=level.size)
        return function(*operands)

    def transpose(self, residuals: tuple, g: jax.Array) -> list[jax.Array]:
        """``bwd`` through each ``vmap`` level; a tangent not batched at a level gets the sum over it."""
        function = self.unbatched_transpose
        count = self.residuals.num_leaves
        for level in self.levels:
            function = _batched_transpose(function, level, count)
        return function(*residuals, g)

    def aval(self) -> Any:
        """``dy``'s abstract value: the unbatched one with each level's batch axis in front."""
        out = self.out
        for level in self.levels:
            out = unmapped_aval(level.size, 0, out)
        return out


def _batched_transpose(function: Callable, level: Level, count: int) -> Callable:
    tangent_dims = level.dims[count:]

    def transposed(*operands: Any) -> list[jax.Array]:
        cotangents = jax.vmap(function, in_axes=(*level.dims[:count], 0), axis_size=level.size)(*operands)
        return [c if d is not None else c.sum(0) for c, d in zip(cotangents, tangent_dims, strict=True)]

    return transposed


if PRIMITIVES:
    hand_written_linear_p = Primitive("hand_written_linear")
    """``L``: ``dy = J t`` from an op's residuals and tangents, transposed by its hand-written ``bwd``."""

    def _impl(*operands: jax.Array, linear: Linear) -> jax.Array:
        return linear.apply(*operands)

    hand_written_linear_p.def_impl(functools.partial(jax.jit, static_argnames="linear")(_impl))
    hand_written_linear_p.def_abstract_eval(lambda *operands, linear: linear.aval())
    mlir.register_lowering(hand_written_linear_p, mlir.lower_fun(_impl, multiple_results=False))

    def _transpose(g: Any, *operands: Any, linear: Linear) -> list[Any]:
        count = linear.residuals.num_leaves
        residuals, tangents = operands[:count], operands[count:]
        if any(ad.is_undefined_primal(r) for r in residuals):
            raise ValueError(f"{linear.name}: the hand-written rule is linear in the tangents only")
        nothing = [None] * len(operands)
        if type(g) is ad.Zero or not any(ad.is_undefined_primal(t) for t in tangents):
            return nothing
        cotangents = linear.transpose(residuals, g)
        return [None] * count + [
            c if ad.is_undefined_primal(t) else None for c, t in zip(cotangents, tangents, strict=True)
        ]

    ad.primitive_transposes[hand_written_linear_p] = _transpose

    def _jvp(primals: tuple, tangents: tuple, *, linear: Linear) -> tuple[jax.Array, jax.Array]:
        """Forward over forward: JAX's JVP of ``jvp`` (``L`` is not linear in the residuals)."""
        tangents = tuple(ad.instantiate_zeros(t) for t in tangents)
        return jax.jvp(linear.apply, primals, tangents)

    ad.primitive_jvps[hand_written_linear_p] = _jvp

    def _batch(operands: tuple, dims: tuple, *, linear: Linear) -> tuple[jax.Array, int]:
        size = next(x.shape[d] for x, d in zip(operands, dims, strict=True) if d is not None)
        moved = tuple(x if d is None else jnp.moveaxis(x, d, 0) for x, d in zip(operands, dims, strict=True))
        level = Level(tuple(None if d is None else 0 for d in dims), size)
        batched = dataclasses.replace(linear, levels=(*linear.levels, level))
        return hand_written_linear_p.bind(*moved, linear=batched), 0

    batching.primitive_batchers[hand_written_linear_p] = _batch


RULES: dict[str, HandWritten] = {}
"""Every op's hand-written rules, by op name (filled as the ops' modules are imported)."""


@dataclasses.dataclass(frozen=True, eq=False)
class HandWritten:
    """An op's hand-written rules (see the module docstring), as ``custom_vjp`` and as ``primitive``.

    Building one registers it in ``RULES`` under ``name``.
    """

    name: str
    forward: Callable
    fwd: Callable
    bwd: Callable
    jvp: Callable
    autodiff: Callable | None = None
    """The forward pass ``grad="autodiff"`` differentiates, where it is not ``forward``."""

    def __post_init__(self) -> None:
        if RULES.setdefault(self.name, self) is not self:
            raise ValueError(f"two ops' hand-written rules are both named {self.name!r}")

    @functools.cached_property
    def custom_vjp(self) -> Callable:
        """``forward`` differentiated by ``bwd`` through ``jax.custom_vjp`` (reverse mode only)."""
        function = jax.custom_vjp(self.forward, nondiff_argnums=(0,))
        function.defvjp(self.fwd, self.bwd)
        return function

    @functools.cached_property
    def primitive(self) -> Callable:
        """``forward`` with the JVP ``jvp`` whose transpose is ``bwd``: forward and reverse mode."""
        function = jax.custom_jvp(self.forward, nondiff_argnums=(0,))
        function.defjvp(self._jvp_rule, symbolic_zeros=True)
        return function

    def _jvp_rule(self, static: Any, primals: tuple, tangents: tuple) -> tuple[jax.Array, jax.Array]:
        y, residuals = self.fwd(static, *primals)
        present = tuple(_is_tangent(t) for t in tangents)
        if not any(present):
            return y, jax.custom_derivatives.SymbolicZero(jax.typeof(y).to_tangent_aval())
        flat, tree = tree_util.tree_flatten(residuals)
        linear = Linear(self.name, self.jvp, self.bwd, static, tree, present, jax.typeof(y).to_tangent_aval())
        given = [t for t in tangents if _is_tangent(t)]
        return y, hand_written_linear_p.bind(*flat, *given, linear=linear)

    def select(self, grad: str | None) -> Callable:
        """The function for a ``grad`` mode: ``"custom"``, ``"custom_vjp"`` or ``"autodiff"``."""
        mode = _grad.resolve(grad)
        if mode == "autodiff":
            return self.forward if self.autodiff is None else self.autodiff
        if mode == "custom" and PRIMITIVES:
            return self.primitive
        return _grad.with_forward_mode_hint(self.custom_vjp)


def _is_tangent(t: Any) -> bool:
    return t is not None and not isinstance(t, jax.custom_derivatives.SymbolicZero)
