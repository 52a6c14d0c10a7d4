"""Every public callable documents its arguments, what it returns and what it raises.

The reference (``docs/api``) is built from these docstrings in Google style. The rules, checked
on every function and class a public module exports (the modules of ``PUBLIC_MODULES``):

- a function with parameters has an ``Args:`` section naming each of them, and no other;
- a function whose return annotation is not ``None`` has a ``Returns:`` (or ``Yields:``) section;
- a function that raises (a ``raise`` in its body, nested ``init``/``apply`` included, or a call
  into ``funcnn.checks``, which raise ``LayerConfigError``) has a ``Raises:`` section;
- a function that returns a ``Layer`` (layers, combinators, models) has a ``Shapes:`` section:
  its input shape and the output shape it gives;
- a named tuple has an ``Attributes:`` section naming each field; another class (not an
  exception, warning or enum) has ``Args:`` for its constructor.
"""

from __future__ import annotations

import ast
import enum
import importlib
import inspect
import re
import textwrap
from collections.abc import Callable

import pytest

from tests.test_docs import PUBLIC_MODULES, public_names

SECTION = re.compile(r"^([A-Z][A-Za-z ]*):\s*$")
ITEM = re.compile(r"^\s+\**([A-Za-z_]\w*)(?:\s*\([^)]*\))?:(?:\s|$)")


def sections(doc: str) -> dict[str, list[str]]:
    """The Google-style sections of ``doc``: title to the names its items document (the
    words before ``:`` at the section's first indentation)."""
    found: dict[str, list[str]] = {}
    title, indent = None, None
    for line in doc.splitlines():
        if match := SECTION.match(line):
            title, indent = match.group(1), None
            found[title] = []
        elif title is not None and line.strip():
            if not line[0].isspace():
                title = None
                continue
            width = len(line) - len(line.lstrip())
            indent = width if indent is None else indent
            if width == indent and (item := ITEM.match(line)):
                found[title].append(item.group(1))
    return found


def public_callables() -> dict[str, Callable]:
    """Every function and class defined in funcnn that a public module exports, by dotted name."""
    found = {}
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in public_names(module_name):
            value = getattr(module, name)
            defined_in = getattr(value, "__module__", "") or ""
            if (inspect.isfunction(value) or inspect.isclass(value)) and defined_in.startswith("funcnn"):
                found[f"{defined_in}.{value.__qualname__}"] = value
    return found


def raises(function: Callable) -> bool:
    """Whether ``function``'s source raises: a ``raise`` with an exception (not a bare re-raise),
    or a call into ``funcnn.checks``."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and node.exc is not None:
            return True
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "checks"
        ):
            return True
    return False


def function_problems(function: Callable) -> list[str]:
    doc = sections(inspect.getdoc(function) or "")
    signature = inspect.signature(function)
    params = [name for name in signature.parameters if name not in ("self", "cls")]
    problems = []
    if params and "Args" not in doc:
        problems.append("no Args section")
    elif params:
        if missing := [name for name in params if name not in doc["Args"]]:
            problems.append(f"Args does not name {missing}")
        if extra := [name for name in doc["Args"] if name not in params]:
            problems.append(f"Args names {extra}, which are not parameters")
    returned = signature.return_annotation
    if returned not in (None, "None", inspect.Signature.empty) and not {"Returns", "Yields"} & doc.keys():
        problems.append("no Returns section")
    if raises(function) and "Raises" not in doc:
        problems.append("no Raises section (it raises)")
    if returned in ("Layer", "core.Layer") and "Shapes" not in doc:
        problems.append("no Shapes section (it returns a Layer)")
    return problems


def class_problems(cls: type) -> list[str]:
    if issubclass(cls, (BaseException, enum.Enum, str)) or getattr(cls, "_is_protocol", False):
        return [] if inspect.getdoc(cls) else ["no docstring"]
    doc = sections(inspect.getdoc(cls) or "")
    if hasattr(cls, "_fields"):
        missing = [name for name in cls._fields if name not in doc.get("Attributes", [])]
        return [f"Attributes does not name {missing}"] if missing else []
    params = [name for name in inspect.signature(cls).parameters]
    missing = [name for name in params if name not in doc.get("Args", [])]
    return [f"Args does not name {missing}"] if missing else []


def undocumented(prefix: str = "funcnn") -> dict[str, list[str]]:
    """The public callables under ``prefix`` whose docstrings break a rule, with the rules broken."""
    found = {}
    for name, value in public_callables().items():
        if name.startswith(prefix):
            problems = class_problems(value) if inspect.isclass(value) else function_problems(value)
            if problems:
                found[name] = problems
    return found


def test_every_public_callable_documents_its_args_returns_raises_and_shapes():
    callables = public_callables()
    assert len(callables) > 200  # the walk found the package, not an empty import
    problems = undocumented()
    report = "\n".join(f"{name}: {'; '.join(found)}" for name, found in sorted(problems.items()))
    assert not problems, f"{len(problems)} of {len(callables)} public callables:\n{report}"


def test_the_section_reader_finds_args_and_their_names():
    def example(features, *layers, key=None):
        """Summary line.

        Args:
          features: output channels, with a long
            continued line: not an item.
          *layers: the layers.
          key (jax.Array): a key.

        Returns:
          Something.
        """

    assert sections(inspect.getdoc(example)) == {"Args": ["features", "layers", "key"], "Returns": []}
    assert function_problems(example) == []

    def bare(x):
        """No sections."""
        raise ValueError(x)

    assert function_problems(bare) == ["no Args section", "no Raises section (it raises)"]


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_each_public_module_has_a_docstring(module_name):
    assert inspect.getdoc(importlib.import_module(module_name))
