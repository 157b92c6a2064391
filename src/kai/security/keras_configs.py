"""Judging a Keras model's config before Keras is allowed to deserialise it.

A Keras file (``.keras`` or legacy ``.h5``) describes its model as a JSON
tree of objects, each ``{"module", "class_name", "config", "registered_name"}``.
Keras builds every object the tree names, so the tree decides which code
runs at load time. Keras's own safe mode refuses Python bytecode in Lambda
layers, but it has been bypassed before (objects from any importable module,
a config that calls ``enable_unsafe_deserialization``), and legacy ``.h5``
loading honours it only in part. Kai therefore walks the whole tree itself,
at every depth (nested models, wrappers such as ``TimeDistributed``,
initialisers, activations, compile settings) and refuses:

- Lambda layers of any kind (``Lambda``, ``TFOpLambda``, ``__lambda__`` code);
- objects whose ``module`` lies outside the ``keras`` package;
- objects registered by a third-party package (``registered_name`` ``pkg>Name``);
- any mention of switching unsafe deserialisation or safe mode off;
- trees deeper than :data:`MAX_DEPTH`.

:func:`check_keras_config` does this without importing Keras. It returns
the objects the tree names, so the caller can also confirm, with Keras
imported inside the sandbox, that each one is a Keras class.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from kai.errors import UnsafeModelFile

__all__ = [
    "MAX_DEPTH",
    "KerasObjectRef",
    "check_keras_config",
    "find_config_problems",
]

MAX_DEPTH = 200
MAX_PROBLEMS_NAMED = 5
# Markers Keras writes for values, not objects to build: tensors, arrays, bytes, slices.
INTERNAL_MARKERS = frozenset(
    {"__keras_tensor__", "__tensor__", "__numpy__", "__bytes__", "__typespec__"}
    | {"__ellipsis__", "__slice__"}
)
_UNSAFE_SWITCH = re.compile(r"unsafe_deserial|safe_mode", re.IGNORECASE)
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,199}$")


@dataclass(frozen=True)
class KerasObjectRef:
    """One object the config asks Keras to build.

    Attributes:
        where: Its place in the tree, as ``config.layers[2].config.layer``.
        module: The module it names, or None in legacy configs.
        class_name: The class (or ``function``) it names.
        function: The function's name when ``class_name`` is ``function``.
    """

    where: str
    module: str | None
    class_name: str
    function: str | None = None


def check_keras_config(config: Any, *, subject: str) -> list[KerasObjectRef]:
    """The objects a Keras model config names, after refusing the dangerous ones.

    Args:
        config: The parsed JSON of the model's config.
        subject: What the config belongs to, for the message ("the Keras file 'm.keras'").

    Raises:
        UnsafeModelFile: The config holds a Lambda layer, an object outside Keras, a
            third-party registered object, a switch to unsafe deserialisation, or is too deep.
    """
    problems = find_config_problems(config)
    if problems:
        named = "; ".join(problems[:MAX_PROBLEMS_NAMED])
        more = len(problems) - MAX_PROBLEMS_NAMED
        raise UnsafeModelFile(
            f"{subject} is refused: {named}{f'; and {more} more' if more > 0 else ''}. Kai "
            "loads Keras models only when every layer is a built-in Keras class: rebuild "
            "Lambda and custom layers from built-in ones, or export the model to ONNX",
            details={"problems": problems[:50]},
        )
    return list(_object_refs(config))


def find_config_problems(config: Any) -> list[str]:
    """Every reason the config may not be deserialised, in tree order; empty when none."""
    problems: list[str] = []
    for where, value, depth in _walk(config, "config", 0):
        if depth > MAX_DEPTH:
            return [*problems, f"the config nests deeper than {MAX_DEPTH} levels at {where}"]
        if isinstance(value, str) and _UNSAFE_SWITCH.search(value):
            problems.append(f"it tries to switch unsafe deserialization on ({where}: {value!r})")
        elif isinstance(value, dict):
            problems.extend(_object_problems(value, where))
    return problems


def _object_problems(node: dict[str, Any], where: str) -> list[str]:
    found = [
        f"it tries to switch unsafe deserialization on ({where} has key {key!r})"
        for key in node
        if isinstance(key, str) and _UNSAFE_SWITCH.search(key)
    ]
    if "class_name" not in node:
        return found
    class_name = node["class_name"]
    if not isinstance(class_name, str):
        return [*found, f"{where} has a class_name that is not a string"]
    if "lambda" in class_name.lower():
        return [*found, f"a Lambda layer ({class_name}) at {where} carries Python code"]
    if class_name in INTERNAL_MARKERS:
        return found
    module = node.get("module")
    if module is not None and not _inside_keras(module):
        found.append(f"{where} names {class_name!r} from module {module!r}, outside Keras")
    registered = node.get("registered_name")
    if isinstance(registered, str) and ">" in registered and not _inside_keras(registered):
        found.append(f"{where} is a custom object registered as {registered!r}")
    if not _IDENTIFIER.match(class_name):
        found.append(f"{where} names the class {class_name[:80]!r}, which is no Python name")
    if class_name == "function" and not isinstance(node.get("config"), str):
        found.append(f"{where} names a function without its name")
    return found


def _inside_keras(module: Any) -> bool:
    if not isinstance(module, str):
        return False
    return module == "keras" or module.startswith(("keras.", "keras>"))


def _object_refs(config: Any) -> Iterator[KerasObjectRef]:
    for place, value, _ in _walk(config, "config", 0):
        if not isinstance(value, dict) or not isinstance(value.get("class_name"), str):
            continue
        class_name = value["class_name"]
        if class_name in INTERNAL_MARKERS:
            continue
        module = value.get("module")
        function = value.get("config") if class_name == "function" else None
        yield KerasObjectRef(
            where=place,
            module=module if isinstance(module, str) else None,
            class_name=class_name,
            function=function if isinstance(function, str) else None,
        )


def _walk(node: Any, where: str, depth: int) -> Iterator[tuple[str, Any, int]]:
    """Every value in the tree with its place and depth, parents before children."""
    stack: list[tuple[str, Any, int]] = [(where, node, depth)]
    while stack:
        place, value, level = stack.pop()
        yield place, value, level
        if level > MAX_DEPTH:
            return
        if isinstance(value, dict):
            children = [(f"{place}.{key}", child) for key, child in value.items()]
        elif isinstance(value, list):
            children = [(f"{place}[{index}]", child) for index, child in enumerate(value)]
        else:
            continue
        stack.extend((p, child, level + 1) for p, child in reversed(children))
