"""Check hand-written VJPs and JVPs against a reference, finite differences, or the adjoint identity.

A VJP rule maps a cotangent ``u`` of the output to ``J^T u``, one cotangent
per argument. Three ways to check one:

* ``check_vjp(f, *args, reference=g)``: ``J_f^T u = J_g^T u`` entry by entry,
  where ``J_g^T u`` is JAX's autodiff of a plain implementation ``g``.
* ``check_vjp(f, *args)``: per argument, for a random direction ``v``,
  ``<J^T u, v> = <u, J v>`` with ``J v`` from central finite differences in
  float64, ``(f(x + eps v) - f(x - eps v)) / (2 eps)``.
* ``check_adjoint(f, *args)``: the same identity with the exact
  ``J v = f(v) - f(0)``, for functions affine in each argument (convolution,
  dense layers, average pooling).

A JVP rule maps a tangent ``v`` of an argument to ``J v``, shaped like the
output. Two more checks:

* ``check_jvp(f, *args, reference=g)`` or ``check_jvp(f, *args)``: ``J v``,
  per argument and entry by entry, against JAX's autodiff of ``g``, or against
  central finite differences in float64.
* ``check_jvp_vjp(f, *args)``: the JVP and the VJP are each other's
  transpose, ``<J^T u, v> = <u, J v>`` with both sides from ``f``'s own rules
  (``jax.vjp`` and ``jax.jvp``), in the arguments' dtype: the identity that
  lets JAX run reverse mode by transposing the JVP.

On a mismatch they raise ``AssertionError`` with a report naming the argument
(position, parameter name, pytree path), the largest absolute and relative
errors, and the worst entry with both values there. The directional checks
locate the worst entry by repeating the check along each coordinate of a
failing argument (for arguments of at most ``localize_limit`` entries).

Examples:
    >>> import jax, jax.numpy as jnp
    >>> from funcnn.testing import check_vjp
    >>> @jax.custom_vjp
    ... def square(x):
    ...     return x * x
    >>> _ = square.defvjp(lambda x: (x * x, x), lambda x, g: (2 * x * g,))
    >>> check_vjp(square, jnp.arange(3.0), reference=lambda x: x * x)
    >>> check_vjp(square, jnp.arange(3.0))
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Mismatch", "Tolerance", "check_adjoint", "check_jvp", "check_jvp_vjp", "check_vjp", "compare"]

PyTree = Any
Directional = Callable[[tuple, int, PyTree], PyTree]
"""``(args, argument index, direction v shaped like that argument) -> J v``, shaped like the output."""


class Tolerance(NamedTuple):
    """Entries agree when ``|got - expected| <= atol + rtol |expected|``.

    Attributes:
      atol: the absolute error every entry may have.
      rtol: the error allowed per unit of ``|expected|``, added to ``atol``.
    """

    atol: float
    rtol: float


# Central differences in float64 with eps = 1e-6: truncation ~eps^2, rounding ~1e-16 / eps.
_DIRECTIONAL_TOLERANCE = Tolerance(1e-6, 1e-5)


class Mismatch(NamedTuple):
    """Where two arrays disagree: the largest errors, and the worst entry with both values.

    Attributes:
      max_abs: the largest ``|got - expected|`` over all entries (NaN when an entry is NaN).
      max_rel: the largest ``|got - expected| / |expected|`` over the entries where ``expected``
        is neither zero nor NaN; ``inf`` when there are none.
      index: the worst entry's index, the one furthest beyond its allowed error (a NaN on either
        side first); ``()`` for scalars.
      got: the value under test at ``index``.
      expected: the expected value at ``index``.
    """

    max_abs: float
    max_rel: float
    index: tuple[int, ...]
    got: float
    expected: float

    def describe(self, got_name: str, expected_name: str, tolerance: Tolerance) -> str:
        """One line: errors, tolerance, and both values at the worst entry.

        Args:
          got_name: what to call the side under test (e.g. ``"vjp"``).
          expected_name: what to call the expected side (e.g. ``"reference"``).
          tolerance: the tolerance that was applied, quoted in the line.

        Returns:
          The line, without a trailing newline.
        """
        return (
            f"max abs error {self.max_abs:.3g}, max rel error {self.max_rel:.3g} "
            f"(atol {tolerance.atol:g}, rtol {tolerance.rtol:g}); worst at index {self.index}: "
            f"{got_name} {self.got:.10g}, {expected_name} {self.expected:.10g}"
        )


def compare(got: Any, expected: Any, tolerance: Tolerance) -> Mismatch | None:
    """``None`` if ``got`` and ``expected`` agree within ``tolerance`` everywhere, else the mismatch.

    The worst entry is the one furthest beyond its allowed error; a NaN on
    either side never agrees, and counts as the worst.

    Args:
      got: the values under test, anything ``np.asarray`` takes (a scalar, a list, a JAX or
        NumPy array); compared in float64: a complex NumPy or JAX array loses its imaginary part
        (with NumPy's ``ComplexWarning``), a complex Python scalar or list raises ``TypeError``.
      expected: the values to match, of the same shape as ``got``; the relative error is
        taken against them.
      tolerance: the allowed error, ``|got - expected| <= atol + rtol |expected|`` entry by entry.

    Returns:
      ``None`` when every entry is within ``tolerance``, else a
      [`Mismatch`][funcnn.testing.Mismatch] with the largest errors and the worst entry.

    Raises:
      ValueError: when ``got`` and ``expected`` differ in shape (they are never broadcast).

    Examples:
        >>> compare([1.0, 2.0], [1.0, 2.5], Tolerance(1e-6, 0.0)).index
        (1,)
    """
    got = np.asarray(got, np.float64)
    expected = np.asarray(expected, np.float64)
    if got.shape != expected.shape:
        raise ValueError(f"compare: `got` has shape {got.shape} but `expected` has shape {expected.shape}")
    error = np.abs(got - expected)
    allowed = tolerance.atol + tolerance.rtol * np.abs(expected)
    if np.all(error <= allowed):
        return None
    index = np.unravel_index(int(np.argmax(np.where(np.isnan(error), np.inf, error - allowed))), got.shape)
    nonzero = np.abs(expected) > 0
    relative = error[nonzero] / np.abs(expected[nonzero])
    return Mismatch(
        max_abs=float(np.max(error)),
        max_rel=float(np.max(relative)) if relative.size else float("inf"),
        index=tuple(int(i) for i in index),
        got=float(got[index]),
        expected=float(expected[index]),
    )


# --- naming and random trees ---------------------------------------------------


def _function_name(f: Callable) -> str:
    while isinstance(f, functools.partial):
        f = f.func
    return getattr(f, "__name__", type(f).__name__)


def _argument_labels(f: Callable, count: int) -> list[str]:
    """``"argument 1 `kernel`"`` for each positional argument, with the name when the signature has one."""
    try:
        parameters = list(inspect.signature(f).parameters.values())
    except (TypeError, ValueError):
        parameters = []
    positional = [p.name for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    variadic = next((p.name for p in parameters if p.kind == p.VAR_POSITIONAL), None)
    labels = []
    for i in range(count):
        if i < len(positional):
            name = positional[i]
        else:
            name = f"{variadic}[{i - len(positional)}]" if variadic else ""
        labels.append(f"argument {i} `{name}`" if name else f"argument {i}")
    return labels


def _is_inexact(leaf: Any) -> bool:
    return jnp.issubdtype(jnp.result_type(leaf), jnp.inexact)


def _leaf_description(label: str, path: tuple, leaf: Any) -> str:
    return f"{label}{jax.tree_util.keystr(path)} (shape {np.shape(leaf)}, {jnp.result_type(leaf)})"


def _random_like(key: jax.Array, tree: PyTree) -> PyTree:
    """Standard-normal leaves shaped like ``tree``'s; ``float0`` zeros for integer leaves (no tangent)."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    keys = jax.random.split(key, max(len(leaves), 1))
    randoms = [
        jax.random.normal(k, jnp.shape(leaf), jnp.result_type(leaf))
        if _is_inexact(leaf)
        else np.zeros(jnp.shape(leaf), jax.dtypes.float0)
        for k, leaf in zip(keys, leaves)
    ]
    return jax.tree_util.tree_unflatten(treedef, randoms)


def _widest(leaf: jax.Array) -> jnp.dtype:
    """The widest enabled dtype of ``leaf``'s kind: float64 / complex128 with x64, else 32-bit."""
    return jnp.result_type(complex if jnp.iscomplexobj(leaf) else float)


def _inner(a: PyTree, b: PyTree) -> jax.Array:
    """``<a, b>``, summed over the inexact leaves of two pytrees of one structure, in the widest dtype."""
    pairs = zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b))
    products = [jnp.vdot(x.astype(_widest(x)), y.astype(_widest(y))).real for x, y in pairs if _is_inexact(x)]
    return sum(products, start=0.0)


def _as_arrays(args: tuple) -> tuple:
    return jax.tree_util.tree_map(jnp.asarray, args)


def _replace(args: tuple, index: int, value: PyTree) -> tuple:
    return (*args[:index], value, *args[index + 1 :])


def _to_float64(tree: PyTree) -> PyTree:
    """Inexact leaves as float64 (complex128); others unchanged. Call with x64 enabled."""
    return jax.tree_util.tree_map(lambda x: jnp.asarray(x, _widest(x)) if _is_inexact(x) else x, tree)


# --- the checks -----------------------------------------------------------------


def check_vjp(
    f: Callable,
    *args: PyTree,
    reference: Callable | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    eps: float = 1e-6,
    seed: int = 0,
    num_cotangents: int = 2,
    localize_limit: int = 4096,
) -> None:
    """Check the VJP of ``f`` at ``args`` (``jax.vjp(f, *args)``, custom rules included).

    With ``reference``, compares ``J_f^T u`` with the VJP of ``reference`` (JAX
    autodiff of a plain implementation of the same function), entry by entry,
    for ``num_cotangents`` random cotangents ``u``; the outputs must agree too.
    Without, checks ``<J^T u, v> = <u, (f(x + eps v) - f(x - eps v)) / (2 eps)>``
    per argument for random ``u`` and ``v``, in float64 (the arguments are
    converted).

    Args:
      f: the function under test, called with positional arguments only.
        Arrays it closes over keep their dtype in the float64 check: pass
        them as arguments to have them converted.
      *args: its arguments, pytrees of arrays (Python numbers are converted);
        ``None`` and integer leaves are held fixed, and an argument without a
        floating leaf is not checked.
      reference: the function ``f`` should match, differentiated by JAX, called
        with the same arguments; ``None`` (the default) checks against central
        finite differences instead.
      atol: absolute tolerance. Default: with ``reference``, by the dtype of each
        compared leaf (float64 ``1e-9``, float32 ``1e-5``, 16-bit ``5e-2``);
        without, ``1e-6``, on the two inner products. Given alone, ``rtol`` is 0.
      rtol: relative tolerance, relative to the expected side (the reference, or
        ``<u, J v>``). Default: with ``reference``, float64 ``1e-7``, float32
        ``1e-4``, 16-bit ``5e-2``; without, ``1e-5``. Given alone, ``atol`` is 0.
      eps: the finite-difference step (without ``reference`` only).
      seed: seeds the random cotangents ``u`` and directions ``v`` (standard
        normal), so a failure repeats.
      num_cotangents: how many random cotangents ``u`` to try (without
        ``reference``, each with a fresh direction ``v`` per argument).
      localize_limit: without ``reference``, the largest leaf (in entries) whose
        worst entry a failing check looks for, by repeating it along each
        coordinate; larger leaves get only the inner-product line.

    Raises:
      AssertionError: ``f`` disagrees; the message has one entry per failure. With
        ``reference``: the output structures differ, or an output leaf or a cotangent
        leaf (per argument and cotangent) differs in shape or by more than the
        tolerance, with the errors and the worst entry. Without: for an argument and
        a cotangent, ``|<J^T u, v> - <u, J v>| > atol + rtol |<u, J v>|``, with both
        sides and, below ``localize_limit``, the worst entry of ``J^T u``.

    Warning:
      Finite differences need ``f`` differentiable at ``args``: at a kink
      (ReLU at 0, tied maxima in a max pool) they average the one-sided
      slopes, which no rule returns. Check such points against a reference.

    Examples:
        >>> import jax.numpy as jnp
        >>> check_vjp(jnp.sin, jnp.linspace(0.0, 1.0, 5), reference=jnp.sin)
    """
    name = _function_name(f)
    args = _as_arrays(args)
    if reference is not None:
        failures = _against_reference(f, reference, args, _tolerance(atol, rtol), seed, num_cotangents)
        _raise(f"check_vjp: `{name}` disagrees with the VJP of `{_function_name(reference)}`:", failures)
        return
    tolerance = _tolerance(atol, rtol) or _DIRECTIONAL_TOLERANCE
    with jax.enable_x64(True):
        args64 = _to_float64(args)
        failures = _against_directional(
            f,
            args64,
            _central_difference(f, eps),
            "central differences",
            tolerance,
            seed,
            num_cotangents,
            localize_limit,
        )
    _raise(f"check_vjp: `{name}` disagrees with central finite differences (float64, eps {eps:g}):", failures)


def check_adjoint(
    f: Callable,
    *args: PyTree,
    atol: float | None = None,
    rtol: float | None = None,
    seed: int = 0,
    num_cotangents: int = 2,
    localize_limit: int = 4096,
) -> None:
    """Check the adjoint identity ``<J^T u, v> = <u, J v>`` for ``f`` affine in each argument.

    For such ``f`` (linear plus a constant in each argument, the others held:
    convolution and dense layers in the input and in the kernel, average
    pooling) ``J v = f(v) - f(0)`` exactly, so the check needs neither a
    reference nor finite differences and runs in the arguments' own dtype.
    ``args`` fix the shapes, dtypes and the other arguments; ``J^T u`` is
    ``jax.vjp(f, *args)`` applied to a random ``u``.

    Args:
      f: the function under test, affine in each argument that has floating leaves,
        called with positional arguments only.
      *args: its arguments, pytrees of arrays: they fix the shapes and dtypes, and
        the arguments held while another is checked; ``None`` and integer leaves
        are held fixed, and an argument without a floating leaf is not checked.
      atol: absolute tolerance on the two inner products. Default: that of the
        narrowest float among the arguments' leaves (float64 ``1e-9``, float32
        ``1e-5``, 16-bit ``5e-2``). Given alone, ``rtol`` is 0.
      rtol: relative tolerance, relative to ``|<u, J v>|``. Default: float64
        ``1e-7``, float32 ``1e-4``, 16-bit ``5e-2``, as for ``atol``. Given alone,
        ``atol`` is 0.
      seed: seeds the random cotangents ``u`` and directions ``v`` (standard
        normal), so a failure repeats.
      num_cotangents: how many random cotangents to try, each with a fresh
        direction ``v`` per argument.
      localize_limit: the largest leaf (in entries) whose worst entry a failing
        check looks for, by repeating it along each coordinate; larger leaves get
        only the inner-product line.

    Raises:
      AssertionError: for some argument and cotangent,
        ``|<J^T u, v> - <u, J v>| > atol + rtol |<u, J v>|``; the message gives both
        sides for each failure and, below ``localize_limit``, the worst entry of ``J^T u``
        against ``<u, J e_j>``. A function not affine in the argument generally fails.

    Examples:
        >>> import jax.numpy as jnp
        >>> check_adjoint(lambda x, w: x @ w, jnp.ones((2, 3)), jnp.ones((3, 4)))
    """
    title = f"check_adjoint: `{_function_name(f)}` fails <J^T u, v> = <u, J v> with J v = f(v) - f(0):"
    _check_identity(
        f, args, _affine_difference(f), "f(v) - f(0)", title, atol, rtol, seed, num_cotangents, localize_limit
    )


def check_jvp(
    f: Callable,
    *args: PyTree,
    reference: Callable | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    eps: float = 1e-6,
    seed: int = 0,
    num_tangents: int = 2,
) -> None:
    """Check the JVP of ``f`` at ``args`` (``jax.jvp(f, args, tangents)``, custom rules included).

    For ``num_tangents`` random tangents ``v`` of each argument in turn (the
    others' tangents zero), compares ``J v`` entry by entry with the JVP of
    ``reference`` (JAX autodiff of a plain implementation), or, without one,
    with the central difference ``(f(x + eps v) - f(x - eps v)) / (2 eps)`` in
    float64 (the arguments are converted).

    Unlike [`check_vjp`][funcnn.testing.check_vjp], the outputs of ``f`` and
    ``reference`` themselves are not compared, only their JVPs.

    Args:
      f: the function under test, called with positional arguments only.
        Arrays it closes over keep their dtype in the float64 check: pass
        them as arguments to have them converted.
      *args: its arguments, pytrees of arrays (Python numbers are converted);
        ``None`` and integer leaves are held fixed, and an argument without a
        floating leaf is not checked.
      reference: the function ``f`` should match, differentiated by JAX
        (``jax.jvp``); ``None`` (the default) checks against central finite
        differences instead.
      atol: absolute tolerance, entry by entry of ``J v``. Default: with
        ``reference``, by the dtype of each output leaf (float64 ``1e-9``, float32
        ``1e-5``, 16-bit ``5e-2``); without, ``1e-6``. Given alone, ``rtol`` is 0.
      rtol: relative tolerance, relative to the expected ``J v``. Default: with
        ``reference``, float64 ``1e-7``, float32 ``1e-4``, 16-bit ``5e-2``;
        without, ``1e-5``. Given alone, ``atol`` is 0.
      eps: the finite-difference step (without ``reference`` only).
      seed: seeds the random tangents ``v`` (standard normal), so a failure repeats.
      num_tangents: how many random tangents to try per argument.

    Raises:
      AssertionError: for some argument and tangent, an output leaf of ``J v``
        differs in shape from the expected one or by more than the tolerance; the
        message names each (argument, tangent, output leaf) with the largest errors
        and the worst entry.

    Examples:
        >>> import jax.numpy as jnp
        >>> check_jvp(jnp.tanh, jnp.linspace(-1.0, 1.0, 5), reference=jnp.tanh)
        >>> check_jvp(jnp.tanh, jnp.linspace(-1.0, 1.0, 5))
    """
    name = _function_name(f)
    args = _as_arrays(args)
    if reference is not None:
        tolerance = _tolerance(atol, rtol)
        failures = _jvp_against(f, args, _jvp_of(reference), "reference", tolerance, seed, num_tangents)
        _raise(f"check_jvp: `{name}` disagrees with the JVP of `{_function_name(reference)}`:", failures)
        return
    tolerance = _tolerance(atol, rtol) or _DIRECTIONAL_TOLERANCE
    with jax.enable_x64(True):
        args64 = _to_float64(args)
        failures = _jvp_against(
            f, args64, _central_difference(f, eps), "central differences", tolerance, seed, num_tangents
        )
    _raise(f"check_jvp: `{name}` disagrees with central finite differences (float64, eps {eps:g}):", failures)


def check_jvp_vjp(
    f: Callable,
    *args: PyTree,
    atol: float | None = None,
    rtol: float | None = None,
    seed: int = 0,
    num_cotangents: int = 2,
    localize_limit: int = 4096,
) -> None:
    """Check that ``f``'s VJP is the transpose of its JVP: ``<J^T u, v> = <u, J v>``.

    ``J^T u`` is ``jax.vjp(f, *args)`` applied to a random ``u``, ``J v`` is
    ``jax.jvp(f, args, v)`` for a random ``v`` in one argument: both from
    ``f``'s own rules, so a hand-written JVP and a hand-written VJP are checked
    against each other, in the arguments' dtype, with no reference and no
    finite differences.

    Args:
      f: the function under test, called with positional arguments only.
      *args: its arguments, pytrees of arrays, the point where both rules are
        taken; ``None`` and integer leaves are held fixed, and an argument without
        a floating leaf is not checked.
      atol: absolute tolerance on the two inner products. Default: that of the
        narrowest float among the arguments' leaves (float64 ``1e-9``, float32
        ``1e-5``, 16-bit ``5e-2``). Given alone, ``rtol`` is 0.
      rtol: relative tolerance, relative to ``|<u, J v>|``. Default: float64
        ``1e-7``, float32 ``1e-4``, 16-bit ``5e-2``, as for ``atol``. Given alone,
        ``atol`` is 0.
      seed: seeds the random cotangents ``u`` and tangents ``v`` (standard
        normal), so a failure repeats.
      num_cotangents: how many random cotangents to try, each with a fresh
        tangent ``v`` per argument.
      localize_limit: the largest leaf (in entries) whose worst entry a failing
        check looks for, by taking the JVP along each coordinate; larger leaves get
        only the inner-product line.

    Raises:
      AssertionError: for some argument and cotangent,
        ``|<J^T u, v> - <u, J v>| > atol + rtol |<u, J v>|``; the message gives both
        sides for each failure and, below ``localize_limit``, the worst entry of ``J^T u``
        against ``<u, J e_j>``.

    Examples:
        >>> import jax.numpy as jnp
        >>> check_jvp_vjp(lambda x, w: jnp.tanh(x @ w), jnp.ones((2, 3)), jnp.ones((3, 4)))
    """
    title = f"check_jvp_vjp: `{_function_name(f)}` fails <J^T u, v> = <u, J v> with J v by jax.jvp:"
    _check_identity(f, args, _jvp_of(f), "jvp", title, atol, rtol, seed, num_cotangents, localize_limit)


def _check_identity(
    f: Callable,
    args: tuple,
    directional: Directional,
    method: str,
    title: str,
    atol: float | None,
    rtol: float | None,
    seed: int,
    num_cotangents: int,
    localize_limit: int,
) -> None:
    """``<J^T u, v> = <u, J v>`` (arguments' dtype), ``J v`` by ``directional``; raises with ``title``."""
    args = _as_arrays(args)
    tolerance = _tolerance(atol, rtol) or _narrowest_tolerance(args)
    _raise(
        title,
        _against_directional(f, args, directional, method, tolerance, seed, num_cotangents, localize_limit),
    )


def _tolerance(atol: float | None, rtol: float | None) -> Tolerance | None:
    """The caller's tolerance; ``None`` (the defaults) when neither is given, 0 for the one left out."""
    if atol is None and rtol is None:
        return None
    return Tolerance(atol or 0.0, rtol or 0.0)


def _narrowest_tolerance(args: tuple) -> Tolerance:
    """The reference tolerance of the narrowest float among the arguments' leaves."""
    dtypes = [jnp.result_type(leaf) for leaf in jax.tree_util.tree_leaves(args) if _is_inexact(leaf)]
    return max((_reference_tolerance(dtype) for dtype in dtypes), default=_reference_tolerance(jnp.float64))


def _reference_tolerance(dtype: jnp.dtype) -> Tolerance:
    """A correct rule matches autodiff of a reference up to rounding: looser for narrower floats."""
    bits = jnp.finfo(dtype).bits
    if bits >= 64:
        return Tolerance(1e-9, 1e-7)
    if bits >= 32:
        return Tolerance(1e-5, 1e-4)
    return Tolerance(5e-2, 5e-2)


def _raise(title: str, failures: list[str]) -> None:
    if failures:
        raise AssertionError("\n".join([title, *failures]))


def _against_reference(
    f: Callable, reference: Callable, args: tuple, tolerance: Tolerance | None, seed: int, num_cotangents: int
) -> list[str]:
    """Report lines for each output and argument leaf where ``f`` and ``reference`` disagree."""
    structure = jax.tree_util.tree_structure(jax.eval_shape(f, *args))
    structure_ref = jax.tree_util.tree_structure(jax.eval_shape(reference, *args))
    if structure != structure_ref:
        return [f"  the output structures differ: {structure} and {structure_ref}"]

    y, vjp = jax.vjp(f, *args)
    y_ref, vjp_ref = jax.vjp(reference, *args)
    us = [_random_like(jax.random.fold_in(jax.random.key(seed), c), y) for c in range(num_cotangents)]
    cts, cts_ref = [vjp(u) for u in us], [vjp_ref(u) for u in us]
    failures = _compare_trees("output", "", y, y_ref, "f", tolerance)
    labels = _argument_labels(f, len(args))
    for c, (ct, ct_ref) in enumerate(zip(cts, cts_ref)):
        for label, tree, tree_ref in zip(labels, ct, ct_ref):
            failures += _compare_trees(label, f", cotangent {c}", tree, tree_ref, "vjp", tolerance)
    return failures


def _compare_trees(
    label: str,
    suffix: str,
    tree: PyTree,
    tree_ref: PyTree,
    got_name: str,
    tolerance: Tolerance | None,
    expected_name: str = "reference",
) -> list[str]:
    """Report lines for each inexact leaf of ``tree`` that disagrees with ``tree_ref``'s."""
    failures = []
    leaves_ref = jax.tree_util.tree_leaves(tree_ref)
    for (path, got), expected in zip(jax.tree_util.tree_leaves_with_path(tree), leaves_ref):
        if not _is_inexact(got):
            continue
        where = _leaf_description(label, path, got) + suffix
        if np.shape(got) != np.shape(expected):
            failures.append(f"  {where}: the {expected_name} has shape {np.shape(expected)}")
            continue
        leaf_tolerance = tolerance or _reference_tolerance(jnp.result_type(got))
        mismatch = compare(got, expected, leaf_tolerance)
        if mismatch:
            failures += [f"  {where}:", "    " + mismatch.describe(got_name, expected_name, leaf_tolerance)]
    return failures


def _central_difference(f: Callable, eps: float) -> Directional:
    """``J v`` by ``(f(x + eps v) - f(x - eps v)) / (2 eps)`` in one argument."""

    def step(args: tuple, index: int, v: PyTree, sign: float) -> PyTree:
        moved = jax.tree_util.tree_map(
            lambda x, d: x + sign * eps * d if _is_inexact(x) else x, args[index], v
        )
        return f(*_replace(args, index, moved))

    def directional(args: tuple, index: int, v: PyTree) -> PyTree:
        plus, minus = step(args, index, v, 1.0), step(args, index, v, -1.0)
        return jax.tree_util.tree_map(lambda a, b: (a - b) / (2 * eps), plus, minus)

    return directional


def _affine_difference(f: Callable) -> Directional:
    """``J v = f(v) - f(0)`` in one argument, exact when ``f`` is affine in it."""

    def at(args: tuple, index: int, direction: PyTree, scale: float) -> PyTree:
        point = jax.tree_util.tree_map(
            lambda x, d: scale * d if _is_inexact(x) else x, args[index], direction
        )
        return f(*_replace(args, index, point))

    def directional(args: tuple, index: int, v: PyTree) -> PyTree:
        return jax.tree_util.tree_map(jnp.subtract, at(args, index, v, 1.0), at(args, index, v, 0.0))

    return directional


def _jvp_of(f: Callable) -> Directional:
    """``J v`` by ``jax.jvp`` of ``f``, ``v`` in one argument and zero tangents in the others."""

    def directional(args: tuple, index: int, v: PyTree) -> PyTree:
        tangents = tuple(v if i == index else _zeros_like(arg) for i, arg in enumerate(args))
        return jax.jvp(f, args, tangents)[1]

    return directional


def _zeros_like(tree: PyTree) -> PyTree:
    """Zero tangents for ``tree``: zeros for inexact leaves, ``float0`` for the others."""
    return jax.tree_util.tree_map(
        lambda x: jnp.zeros_like(x) if _is_inexact(x) else np.zeros(np.shape(x), jax.dtypes.float0), tree
    )


def _jvp_against(
    f: Callable,
    args: tuple,
    expected: Directional,
    method: str,
    tolerance: Tolerance | None,
    seed: int,
    num_tangents: int,
) -> list[str]:
    """Report lines for each argument, tangent and output leaf where ``jax.jvp`` of ``f`` and
    ``expected`` disagree."""
    jvp = _jvp_of(f)
    labels = _argument_labels(f, len(args))
    failures = []
    for c in range(num_tangents):
        key = jax.random.fold_in(jax.random.key(seed), c)
        for i, arg in enumerate(args):
            if not any(_is_inexact(leaf) for leaf in jax.tree_util.tree_leaves(arg)):
                continue
            v = _random_like(jax.random.fold_in(key, i), arg)
            failures += _compare_trees(
                "output", f" along {labels[i]}, tangent {c}", jvp(args, i, v), expected(args, i, v), "jvp",
                tolerance, method,
            )  # fmt: skip
    return failures


class _Trial(NamedTuple):
    """One cotangent ``u`` and one argument: ``J^T u`` and both sides of ``<J^T u, v> = <u, J v>``."""

    cotangent: int
    index: int
    u: PyTree
    vjp: PyTree
    by_vjp: jax.Array
    by_method: jax.Array


def _against_directional(
    f: Callable,
    args: tuple,
    directional: Directional,
    method: str,
    tolerance: Tolerance,
    seed: int,
    num_cotangents: int,
    localize_limit: int,
) -> list[str]:
    """Report lines for each argument where ``<J^T u, v>`` and ``<u, J v>`` disagree."""
    differentiable = [
        i for i, arg in enumerate(args) if any(_is_inexact(leaf) for leaf in jax.tree_util.tree_leaves(arg))
    ]

    y, vjp = jax.vjp(f, *args)
    trials = []
    for c in range(num_cotangents):
        key = jax.random.fold_in(jax.random.key(seed), c)
        u = _random_like(jax.random.fold_in(key, len(args)), y)
        cts = vjp(u)
        for i in differentiable:
            v = _random_like(jax.random.fold_in(key, i), args[i])
            trials.append(_Trial(c, i, u, cts[i], _inner(cts[i], v), _inner(u, directional(args, i, v))))
    labels = _argument_labels(f, len(args))
    failures = []
    for trial in trials:
        by_vjp, by_method = float(trial.by_vjp), float(trial.by_method)
        if compare(by_vjp, by_method, tolerance) is None:
            continue
        error = abs(by_vjp - by_method)
        failures.append(
            f"  {labels[trial.index]}, cotangent {trial.cotangent}: <vjp(u), v> = {by_vjp:.10g} but "
            f"<u, J v> = {by_method:.10g} by {method}; abs error {error:.3g}, rel error "
            f"{error / max(abs(by_method), np.finfo(np.float64).tiny):.3g} "
            f"(atol {tolerance.atol:g}, rtol {tolerance.rtol:g})"
        )
        failures += _localize(
            args, trial, labels[trial.index], directional, method, tolerance, localize_limit
        )
    return failures


def _localize(
    args: tuple,
    trial: _Trial,
    label: str,
    directional: Directional,
    method: str,
    tolerance: Tolerance,
    localize_limit: int,
) -> list[str]:
    """Per-entry report lines for one argument: ``(J^T u)[j]`` against ``<u, J e_j>`` for each ``j``."""
    leaves_with_path, treedef = jax.tree_util.tree_flatten_with_path(args[trial.index])
    zeros = [
        jnp.zeros_like(leaf) if _is_inexact(leaf) else np.zeros(np.shape(leaf), jax.dtypes.float0)
        for _, leaf in leaves_with_path
    ]
    lines = []
    for position, ((path, leaf), ct_leaf) in enumerate(
        zip(leaves_with_path, jax.tree_util.tree_leaves(trial.vjp))
    ):
        if not _is_inexact(leaf) or not 0 < leaf.size <= localize_limit:
            continue

        def along(j: jax.Array, position: int = position, leaf: jax.Array = leaf) -> jax.Array:
            basis_vector = jnp.zeros(leaf.size, leaf.dtype).at[j].set(1).reshape(leaf.shape)
            direction = jax.tree_util.tree_unflatten(treedef, _replace(tuple(zeros), position, basis_vector))
            return _inner(trial.u, directional(args, trial.index, direction))

        by_method = jax.lax.map(along, jnp.arange(leaf.size), batch_size=256).reshape(leaf.shape)
        mismatch = compare(ct_leaf, by_method, tolerance)
        if mismatch:
            lines.append(f"    {_leaf_description(label, path, leaf)} entry by entry:")
            lines.append("      " + mismatch.describe("vjp", method, tolerance))
    return lines
