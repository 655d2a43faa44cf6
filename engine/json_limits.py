"""JSON that users send, parsed with bounds: nesting depth and finite numbers.

`json.loads` recurses once per nested array or object and, on 100,000
`[`, fails with RecursionError, which callers that catch ValueError (as
every JSON error is) let through as a crash. It also takes `NaN`,
`Infinity` and `1e400` (a float infinity), which no AWS service accepts.
`loads` here parses as `json.loads` does and raises `JsonLimitError` (a
ValueError) for all three, so one `except ValueError` covers malformed,
too deep and non-finite input alike.

The depth of a document is the number of arrays and objects on its longest
path: `1` has depth 0, `[]` depth 1, `{"a": [1]}` depth 2. Every caller
names its own bound (a request body, a filter policy, a message body).
"""

from __future__ import annotations

import json
import math
from typing import Any


class JsonLimitError(ValueError):
    """JSON that parses but breaks a bound: nested too deep, or a non-finite number."""


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise JsonLimitError(f"number {text[:40]!r} is out of range")
    return number


def _constant(name: str) -> Any:
    raise JsonLimitError(f"{name} is not a JSON number")


def depth_exceeds(value: Any, depth_max: int) -> bool:
    """Whether decoded JSON (dicts, lists, scalars) nests deeper than `depth_max`.

    Iterative, so a deep structure built in Python is measured without
    recursion; stops at the first path that is too deep.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list | tuple):
            children = node
        else:
            continue
        if depth > depth_max:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def loads(text: str | bytes, depth_max: int) -> Any:
    """`json.loads(text)`, refusing depth over `depth_max` and NaN / Infinity / overflow.

    Raises ValueError: json.JSONDecodeError for malformed JSON,
    UnicodeDecodeError for bytes that are not UTF-8/16/32, JsonLimitError
    for the bounds. Linear in the size of `text`.
    """
    if isinstance(text, str):
        openers = text.count("[") + text.count("{")
    else:
        openers = text.count(b"[") + text.count(b"{")
    try:
        value = json.loads(text, parse_float=_finite, parse_constant=_constant)
    except RecursionError:
        # The C scanner recurses per level and gives up near the interpreter's
        # recursion limit; that is far past any bound a caller gives.
        raise JsonLimitError(f"nested deeper than {depth_max} levels") from None
    # A document cannot nest deeper than it has openers: most skip the walk.
    if openers > depth_max and depth_exceeds(value, depth_max):
        raise JsonLimitError(f"nested deeper than {depth_max} levels")
    return value


__all__ = ["JsonLimitError", "depth_exceeds", "loads"]
