"""A Toolbox from a Python module: its source (which the sandbox imports) and one
FunctionSpec per function it exports, read from the functions themselves so the
description a model is given cannot drift from the code it calls.

Parameters become a JSON schema from their type hints (what OpenAI function
calling needs); the signature is written as Python writes it, for the formats
that show functions as text.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable
from typing import Any

from chat.agent.functions import FunctionSpec
from evals.suite import Toolbox

_SCALARS: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}


def json_schema(hint: Any) -> dict[str, Any]:
    """The JSON schema of a parameter's type: str, int, float, bool, list[...],
    dict[...] (and their bare forms); `X | None` is the schema of X, as a missing
    optional argument is simply left out of a call."""
    if hint in _SCALARS:
        return {"type": _SCALARS[hint]}
    origin = typing.get_origin(hint)
    args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    if origin in (types.UnionType, typing.Union) and len(args) == 1:
        return json_schema(args[0])
    if hint is list or origin is list:
        return {"type": "array", "items": json_schema(args[0])} if args else {"type": "array"}
    if hint is dict or origin is dict:
        return {"type": "object"}
    raise TypeError(f"no JSON schema for the type {hint!r}")


def _type_text(hint: Any) -> str:
    """A type as written in Python source: `str`, `list[dict]`, `float | None`."""
    if isinstance(hint, type) and not typing.get_args(hint):
        return hint.__name__
    return str(hint).replace("typing.", "").replace("NoneType", "None")


def signature_of(function: Callable[..., Any]) -> str:
    """`name(a: str, b: int = 0) -> list[dict]`, from the function's hints."""
    hints = typing.get_type_hints(function)
    parts = []
    for name, parameter in inspect.signature(function).parameters.items():
        text = f"{name}: {_type_text(hints[name])}" if name in hints else name
        if parameter.default is not inspect.Parameter.empty:
            text += f" = {parameter.default!r}"
        parts.append(text)
    result = f" -> {_type_text(hints['return'])}" if "return" in hints else ""
    return f"{function.__name__}({', '.join(parts)}){result}"


def spec_of(function: Callable[..., Any]) -> FunctionSpec:
    """A function as the model is told of it: every parameter needs a type hint
    (the schema is built from it) and the function a docstring (its description)."""
    hints = typing.get_type_hints(function)
    properties: dict[str, Any] = {}
    required = []
    for name, parameter in inspect.signature(function).parameters.items():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise TypeError(f"{function.__name__}: *args and **kwargs cannot be described")
        if name not in hints:
            raise TypeError(f"{function.__name__}: parameter {name!r} has no type hint")
        properties[name] = json_schema(hints[name])
        if parameter.default is inspect.Parameter.empty:
            required.append(name)
    if not function.__doc__:
        raise TypeError(f"{function.__name__} has no docstring to describe it")
    return FunctionSpec(
        name=function.__name__,
        description=_unwrapped(inspect.cleandoc(function.__doc__)),
        parameters={"type": "object", "properties": properties, "required": required},
        signature=signature_of(function),
    )


def toolbox_of(module_name_in_workspace: str, python_module: types.ModuleType) -> Toolbox:
    """The toolbox of a standalone module, to be put into /workspace as
    `<module_name_in_workspace>.py`: one function per name in its `__all__`, in
    that order."""
    names = getattr(python_module, "__all__", None)
    if not names:
        raise ValueError(f"{python_module.__name__} has no __all__ naming its functions")
    functions = []
    for name in names:
        function = getattr(python_module, name)
        if not inspect.isfunction(function):
            raise TypeError(f"{python_module.__name__}.{name} is not a function")
        functions.append(spec_of(function))
    return Toolbox(
        module=module_name_in_workspace,
        source=inspect.getsource(python_module),
        functions=tuple(functions),
    )


def _unwrapped(doc: str) -> str:
    """A docstring on one line: its line breaks are the source's wrapping, and the
    question lists one function a line."""
    return " ".join(doc.split())
