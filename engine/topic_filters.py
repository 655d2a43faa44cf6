"""SNS subscription filter policies: validate once, compile, evaluate fast.

A policy is a JSON object. Each key names a message attribute (scope
"attributes") or a property of the JSON body (scope "body", where keys may
nest: {"store": {"city": ["Paris"]}}). Each leaf is a list of *alternatives*;
a key matches when any alternative matches any of the key's values (a
String.Array attribute or a JSON array in the body gives several values);
the policy matches when every key matches (AND). "$or" with a list of two or
more objects ORs whole sub-policies. The operators are SNS's:

| alternative | matches |
| --- | --- |
| "text", 12.5, true, false, null | the same string / number / literal |
| {"prefix": "p"}, {"suffix": "s"} | strings starting / ending so |
| {"equals-ignore-case": "t"} | strings equal ignoring case |
| {"anything-but": x} | present values other than x (a string, a number, a list, |
| | or {"prefix": ...} / {"suffix": ...}) |
| {"numeric": ["=", 5]}, {"numeric": [">", 0, "<=", 150]} | numbers equal to / in the range |
| {"exists": true} / {"exists": false} | the key is present (non-null) / absent |
| {"cidr": "10.0.0.0/24"} | strings that are IP addresses in the block (IPv4 or IPv6) |

Limits (SNS's): at most 5 keys on any one $or path, at most 150
combinations (the product of the alternative counts of the keys, summed
over the $or paths), numbers within -1e9..1e9 with at most 5 decimals, 256
KiB of policy JSON; and tidelog's own, where SNS documents none: at most 50
levels of nesting. A broken rule raises InvalidArgument naming the key.

Compilation turns the policy into a tuple of conjunctions (one per $or
path), each a tuple of (key, matcher) pairs; a matcher is a closure
specialised to the operators the key uses, so evaluation is a few dict
lookups and set/tuple tests per key.
"""

from __future__ import annotations

import ipaddress
import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from tidelog import json_limits
from tidelog.errors import InvalidArgument

FilterScope = Literal["attributes", "body"]
KEYS_MAX = 5
COMBINATIONS_MAX = 150
POLICY_BYTES_MAX = 256 * 1024
NUMBER_ABS_MAX = 1e9
# SNS documents no depth limit; 50 levels of objects and arrays is far past any
# policy its five keys allow, and bounds the work a hostile one can ask for.
NESTING_MAX = 50
PATH_SEP = "\x1f"  # joins nested body keys; cannot occur in JSON keys users write by hand


class _Literal:
    """JSON true / false / null as values distinct from 1, 0 and absent."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


TRUE = _Literal("true")
FALSE = _Literal("false")
NULL = _Literal("null")

Value = str | float | _Literal
Values = tuple[Value, ...]
Matcher = Callable[[Values | None], bool]
View = Mapping[str, Values]


def _literal(value: Any) -> Value:
    """A JSON scalar as a matchable value (bool before int: True is an int)."""
    if value is True:
        return TRUE
    if value is False:
        return FALSE
    if value is None:
        return NULL
    if isinstance(value, int | float):
        return float(value)
    return str(value)


# -- validation and compilation ---------------------------------------------------------------


def _bad(key: str, reason: str) -> InvalidArgument:
    return InvalidArgument(f"filter_policy: key {key!r}: {reason} (InvalidParameter)")


def _check_number(key: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(key, f"{value!r} is not a number")
    number = float(value)
    if not math.isfinite(number) or abs(number) > NUMBER_ABS_MAX:
        raise _bad(key, f"{value!r} is outside SNS's range -1e9..1e9")
    if round(number, 5) != number:
        raise _bad(key, f"{value!r} has more than 5 decimal places")
    return number


def _check_string(key: str, op: str, value: object) -> str:
    if not isinstance(value, str):
        raise _bad(key, f"{op} takes a string, got {value!r}")
    return value


class _KeySpec:
    """The alternatives of one key, sorted by kind."""

    def __init__(self) -> None:
        self.exact: set[Value] = set()
        self.prefixes: list[str] = []
        self.suffixes: list[str] = []
        self.ignore_case: set[str] = set()
        self.but_values: set[Value] = set()
        self.but_prefix: list[str] = []
        self.but_suffix: list[str] = []
        self.ranges: list[tuple[float, bool, float, bool]] = []  # lo, lo_inclusive, hi, hi_inc
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        self.exists_true = False
        self.exists_false = False


_RANGE_OPS = ("<", "<=", "=", ">", ">=")


def _numeric(key: str, spec: _KeySpec, args: object) -> None:
    if not isinstance(args, list) or len(args) not in (2, 4) or len(args) % 2:
        raise _bad(key, "numeric takes [op, number] or [lower op, number, upper op, number]")
    lo, lo_inc, hi, hi_inc = -math.inf, False, math.inf, False
    ops = args[0::2]
    for op, raw in zip(ops, args[1::2], strict=True):
        if op not in _RANGE_OPS:
            raise _bad(key, f"numeric operator {op!r} is not one of {', '.join(_RANGE_OPS)}")
        number = _check_number(key, raw)
        if op == "=":
            if len(args) != 2:
                raise _bad(key, 'numeric "=" takes one number and no range')
            lo, lo_inc, hi, hi_inc = number, True, number, True
        elif op in (">", ">="):
            if lo != -math.inf:
                raise _bad(key, "numeric range has two lower bounds")
            lo, lo_inc = number, op == ">="
        else:
            if hi != math.inf:
                raise _bad(key, "numeric range has two upper bounds")
            hi, hi_inc = number, op == "<="
    if len(args) == 4 and (ops[0] not in (">", ">=") or ops[1] not in ("<", "<=")):
        raise _bad(key, 'a numeric range is [">" or ">=", low, "<" or "<=", high]')
    if lo > hi or (lo == hi and not (lo_inc and hi_inc)):
        raise _bad(key, f"numeric range {args!r} is empty")
    spec.ranges.append((lo, lo_inc, hi, hi_inc))


def _anything_but(key: str, spec: _KeySpec, arg: object) -> None:
    if isinstance(arg, dict):
        if len(arg) != 1:
            raise _bad(key, "anything-but takes one of prefix or suffix")
        ((op, value),) = arg.items()
        if op == "prefix":
            spec.but_prefix.append(_check_string(key, "anything-but prefix", value))
        elif op == "suffix":
            spec.but_suffix.append(_check_string(key, "anything-but suffix", value))
        else:
            raise _bad(key, f"anything-but does not take {op!r} (prefix or suffix)")
        return
    items = arg if isinstance(arg, list) else [arg]
    if not items:
        raise _bad(key, "anything-but needs at least one value")
    for item in items:
        if isinstance(item, str):
            spec.but_values.add(item)
        elif isinstance(item, int | float) and not isinstance(item, bool):
            spec.but_values.add(_check_number(key, item))
        else:
            raise _bad(key, f"anything-but takes strings or numbers, got {item!r}")


def _alternative(key: str, spec: _KeySpec, alt: object) -> None:
    if isinstance(alt, str):
        spec.exact.add(alt)
    elif alt is None or isinstance(alt, bool):
        spec.exact.add(_literal(alt))
    elif isinstance(alt, int | float):
        spec.exact.add(_check_number(key, alt))
    elif isinstance(alt, dict):
        if len(alt) != 1:
            raise _bad(key, f"an operator object holds exactly one operator, got {sorted(alt)}")
        ((op, arg),) = alt.items()
        if op == "prefix":
            spec.prefixes.append(_check_string(key, op, arg))
        elif op == "suffix":
            spec.suffixes.append(_check_string(key, op, arg))
        elif op == "equals-ignore-case":
            spec.ignore_case.add(_check_string(key, op, arg).lower())
        elif op == "anything-but":
            _anything_but(key, spec, arg)
        elif op == "numeric":
            _numeric(key, spec, arg)
        elif op == "exists":
            if not isinstance(arg, bool):
                raise _bad(key, f"exists takes true or false, got {arg!r}")
            if arg:
                spec.exists_true = True
            else:
                spec.exists_false = True
        elif op == "cidr":
            try:
                spec.networks.append(ipaddress.ip_network(_check_string(key, op, arg)))
            except ValueError:
                raise _bad(key, f"cidr {arg!r} is not an IP address block") from None
        else:
            raise _bad(key, f"unknown operator {op!r}")
    else:
        raise _bad(key, f"{alt!r} is not a string, number, true, false, null or operator object")


def _in_networks(value: str, networks: Sequence[Any]) -> bool:
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return False
    return any(address in network for network in networks)


def _build_matcher(spec: _KeySpec) -> Matcher:
    """A closure for one key, specialised to the operators it uses."""
    exact = frozenset(spec.exact)
    only_exact = not (
        spec.prefixes
        or spec.suffixes
        or spec.ignore_case
        or spec.but_values
        or spec.but_prefix
        or spec.but_suffix
        or spec.ranges
        or spec.networks
        or spec.exists_true
        or spec.exists_false
    )
    if only_exact:
        # The common case: one frozenset probe per value.
        def match_exact(values: Values | None) -> bool:
            if values is None:
                return False
            for value in values:  # noqa: SIM110 - a plain loop beats any() on this hot path
                if value in exact:
                    return True
            return False

        return match_exact

    special = _single_kind_matcher(spec, exact)
    if special is not None:
        return special
    prefixes = tuple(spec.prefixes)
    suffixes = tuple(spec.suffixes)
    ignore_case = frozenset(spec.ignore_case)
    but_values = frozenset(spec.but_values)
    but_strings = any(isinstance(v, str) for v in but_values)
    but_numbers = any(isinstance(v, float) for v in but_values)
    but_prefix = tuple(spec.but_prefix)
    but_suffix = tuple(spec.but_suffix)
    ranges = tuple(spec.ranges)
    networks = tuple(spec.networks)
    exists_true, exists_false = spec.exists_true, spec.exists_false

    def match(values: Values | None) -> bool:
        if values is None:
            return exists_false
        if exists_true and any(v is not NULL for v in values):
            return True
        for value in values:
            if value in exact:
                return True
            if type(value) is str:
                if prefixes and value.startswith(prefixes):
                    return True
                if suffixes and value.endswith(suffixes):
                    return True
                if ignore_case and value.lower() in ignore_case:
                    return True
                if but_strings and value not in but_values:
                    return True
                if but_prefix and not value.startswith(but_prefix):
                    return True
                if but_suffix and not value.endswith(but_suffix):
                    return True
                if networks and _in_networks(value, networks):
                    return True
            elif type(value) is float:
                if but_numbers and value not in but_values:
                    return True
                for lo, lo_inc, hi, hi_inc in ranges:
                    if (value > lo or (lo_inc and value == lo)) and (
                        value < hi or (hi_inc and value == hi)
                    ):
                        return True
        return False

    return match


def _single_kind_matcher(spec: _KeySpec, exact: frozenset[Value]) -> Matcher | None:
    """Closures for a key using one operator kind (with or without exact
    values): the usual shape of a policy, and about twice as fast as the
    general matcher."""
    kinds = [
        name
        for name, used in (
            ("prefix", spec.prefixes),
            ("suffix", spec.suffixes),
            ("ignore_case", spec.ignore_case),
            ("but_values", spec.but_values),
            ("but_prefix", spec.but_prefix),
            ("but_suffix", spec.but_suffix),
            ("ranges", spec.ranges),
            ("networks", spec.networks),
            ("exists", spec.exists_true or spec.exists_false),
        )
        if used
    ]
    if len(kinds) != 1 or kinds[0] in ("networks", "exists"):
        return None
    kind = kinds[0]
    if kind in ("prefix", "suffix"):
        affixes = tuple(spec.prefixes or spec.suffixes)
        use_prefix = kind == "prefix"

        def match_affix(values: Values | None) -> bool:
            if values is None:
                return False
            for value in values:
                if value in exact:
                    return True
                if type(value) is str and (
                    value.startswith(affixes) if use_prefix else value.endswith(affixes)
                ):
                    return True
            return False

        return match_affix
    if kind == "ranges" and len(spec.ranges) == 1:
        lo, lo_inc, hi, hi_inc = spec.ranges[0]

        def match_range(values: Values | None) -> bool:
            if values is None:
                return False
            for value in values:
                if value in exact:
                    return True
                if type(value) is float and (
                    (lo < value or (lo_inc and value == lo))
                    and (value < hi or (hi_inc and value == hi))
                ):
                    return True
            return False

        return match_range
    if kind == "but_values" and not exact:
        excluded = frozenset(spec.but_values)
        wanted = float if all(isinstance(v, float) for v in excluded) else str
        if not all(type(v) is wanted for v in excluded):
            return None

        def match_but(values: Values | None) -> bool:
            if values is None:
                return False
            for value in values:  # noqa: SIM110 - a plain loop beats any() here
                if type(value) is wanted and value not in excluded:
                    return True
            return False

        return match_but
    return None


class _Path:
    """One $or path while compiling: its keys and its combination count."""

    def __init__(self) -> None:
        self.keys: dict[str, _KeySpec] = {}
        self.combinations = 1


def _walk(
    node: Mapping[str, Any],
    scope: FilterScope,
    prefix: str,
    paths: list[_Path],
    depth: int,
) -> list[_Path]:
    """Add the node's keys to every path in `paths`; $or multiplies paths."""
    if depth > NESTING_MAX:
        raise InvalidArgument(f"filter_policy: nested deeper than {NESTING_MAX} levels")
    for key, value in node.items():
        if not isinstance(key, str) or not key:
            raise InvalidArgument(f"filter_policy: key {key!r} must be a non-empty string")
        if (
            key == "$or"
            and isinstance(value, list)
            and len(value) >= 2
            and all(isinstance(v, dict) for v in value)
        ):
            grown: list[_Path] = []
            for branch in value:
                copies = []
                for path in paths:
                    copy = _Path()
                    copy.keys = dict(path.keys)
                    copy.combinations = path.combinations
                    copies.append(copy)
                grown.extend(_walk(branch, scope, prefix, copies, depth + 1))
            paths = grown
            continue
        full = prefix + PATH_SEP + key if prefix else key
        if isinstance(value, dict):
            if scope == "attributes":
                raise _bad(
                    key,
                    "nested keys need filter_scope='body' (SNS takes no nested attribute policies)",
                )
            paths = _walk(value, scope, full, paths, depth + 1)
            continue
        if not isinstance(value, list) or not value:
            raise _bad(key, "must be a non-empty list of values or operators")
        for path in paths:
            if full in path.keys:
                raise _bad(key, "appears twice on one $or path")
            spec = _KeySpec()
            for alt in value:
                _alternative(key, spec, alt)
            path.keys[full] = spec
            path.combinations *= len(value)
    return paths


class FilterPolicy:
    """A validated, compiled filter policy. Immutable and thread-safe.

    `matches(view)` takes a view built once per message by
    `attribute_view` or `body_view`. Raises nothing at evaluation time.
    """

    __slots__ = ("policy", "scope", "conjunctions", "text")

    def __init__(self, policy: Mapping[str, Any] | str, scope: FilterScope = "attributes") -> None:
        if scope not in ("attributes", "body"):
            raise InvalidArgument(f"filter_scope: {scope!r} is not 'attributes' or 'body'")
        if isinstance(policy, str | bytes):
            if len(policy) > POLICY_BYTES_MAX:
                raise InvalidArgument("filter_policy: over SNS's 256 KiB")
            try:
                policy = json_limits.loads(policy, NESTING_MAX)
            except json_limits.JsonLimitError as exc:
                raise InvalidArgument(f"filter_policy: {exc} (InvalidParameter)") from None
            except ValueError as exc:
                raise InvalidArgument(f"filter_policy: not JSON ({exc})") from None
        if not isinstance(policy, Mapping):
            raise InvalidArgument("filter_policy: must be a JSON object (a dict)")
        if json_limits.depth_exceeds(policy, NESTING_MAX):
            raise InvalidArgument(
                f"filter_policy: nested deeper than {NESTING_MAX} levels (InvalidParameter)"
            )
        try:
            text = json.dumps(policy, sort_keys=True, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:  # a dict of non-JSON values given to the library
            raise InvalidArgument(f"filter_policy: not JSON data ({exc})") from None
        if len(text) > POLICY_BYTES_MAX:
            raise InvalidArgument("filter_policy: over SNS's 256 KiB")
        paths = _walk(policy, scope, "", [_Path()], 0) if policy else []
        total = sum(path.combinations for path in paths)
        if total > COMBINATIONS_MAX:
            raise InvalidArgument(
                f"filter_policy: {total} combinations, over SNS's {COMBINATIONS_MAX} "
                "(the product of each key's value count, summed over $or paths)"
            )
        for path in paths:
            if len(path.keys) > KEYS_MAX:
                raise InvalidArgument(
                    f"filter_policy: {len(path.keys)} keys on one path, over SNS's {KEYS_MAX} "
                    f"({', '.join(k.replace(PATH_SEP, '.') for k in path.keys)})"
                )
        self.policy: dict[str, Any] = json.loads(text)
        self.scope: FilterScope = scope
        self.text = text
        self.conjunctions: tuple[tuple[tuple[str, Matcher], ...], ...] = tuple(
            tuple((key, _build_matcher(spec)) for key, spec in path.keys.items()) for path in paths
        )

    def matches(self, view: View | None) -> bool:
        """True if the message (as a view) passes. A None view (no attributes,
        or a body that is not a JSON object) matches no non-empty policy."""
        conjunctions = self.conjunctions
        if not conjunctions:
            return True
        if not view:
            return False
        get = view.get
        if len(conjunctions) == 1:
            for key, matcher in conjunctions[0]:  # noqa: SIM110 - faster than all()
                if not matcher(get(key)):
                    return False
            return True
        for conjunction in conjunctions:
            for key, matcher in conjunction:
                if not matcher(get(key)):
                    break
            else:
                return True
        return False

    def __repr__(self) -> str:
        return f"FilterPolicy({self.text}, scope={self.scope!r})"


# -- message views ----------------------------------------------------------------------------


def attribute_view(attributes: Mapping[str, tuple[str, str | bytes]]) -> dict[str, Values]:
    """Values of typed attributes as filters see them (SNS's rules).

    String -> the string; Number -> the number; String.Array -> each
    element (strings, numbers, true/false/null); Binary is ignored, as SNS
    ignores it. A String.Array that is not a JSON array counts as a string.
    """
    view: dict[str, Values] = {}
    for name, (data_type, value) in attributes.items():
        if isinstance(value, bytes):
            continue
        base = data_type.split(".", 1)[0]
        if base == "Number":
            view[name] = (float(value),)
        elif data_type == "String.Array":
            try:
                items = json_limits.loads(value, NESTING_MAX)
            except ValueError:
                items = None
            if isinstance(items, list):
                view[name] = tuple(_literal(v) for v in items if not isinstance(v, dict | list))
            else:
                view[name] = (value,)
        else:
            view[name] = (value,)
    return view


def body_view(body: bytes | str) -> dict[str, Values] | None:
    """Leaf values of a JSON object body by nested key path (None if not an object).

    Arrays contribute each element; objects inside arrays contribute their
    keys under the array's path, as SNS flattens them. A body nested deeper
    than NESTING_MAX levels is not filtered as JSON (None), as one that does
    not parse.
    """
    try:
        document = json_limits.loads(body, NESTING_MAX)
    except ValueError:  # malformed, not UTF-8, too deep
        return None
    if not isinstance(document, dict):
        return None
    view: dict[str, list[Value]] = {}

    def add(path: str, value: Any, depth: int) -> None:
        if depth > NESTING_MAX:
            return
        if isinstance(value, dict):
            for key, item in value.items():
                add(path + PATH_SEP + key if path else key, item, depth + 1)
        elif isinstance(value, list):
            if not value:
                view.setdefault(path, [])
            for item in value:
                add(path, item, depth + 1)
        else:
            view.setdefault(path, []).append(_literal(value))

    add("", document, 0)
    return {path: tuple(values) for path, values in view.items() if values}


def policy_matches(
    policy: Mapping[str, Any] | str,
    *,
    body: bytes | str = b"",
    attributes: Mapping[str, tuple[str, str | bytes]] | None = None,
    scope: FilterScope = "attributes",
) -> bool:
    """Whether a message would pass `policy` (JSON text or a dict) in `scope`,
    as a subscription with that policy would judge it: for trying a policy
    before saving it. `attributes` maps names to (data type, value) pairs
    ("String", "Number", "String.Array", "Binary"). Raises InvalidArgument
    for a broken policy, naming the key and the rule. Pure.
    """
    compiled = FilterPolicy(policy, scope)
    view = body_view(body) if scope == "body" else attribute_view(attributes or {})
    return compiled.matches(view)


__all__ = ["FilterPolicy", "FilterScope", "attribute_view", "body_view", "policy_matches"]
