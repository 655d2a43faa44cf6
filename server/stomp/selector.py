"""JMS message selectors: the SQL-92 subset of the JMS 1.1 spec, section 3.8.1.

A hand-written tokenizer and recursive-descent parser compile a selector
into a predicate over a message's headers. Grammar (precedence low to high):

    or      := and ("OR" and)*
    and     := not ("AND" not)*
    not     := "NOT" not | test
    test    := sum [ cmp sum | ["NOT"] "BETWEEN" sum "AND" sum
                   | ["NOT"] "IN" "(" string ("," string)* ")"
                   | ["NOT"] "LIKE" string ["ESCAPE" string] | "IS" ["NOT"] "NULL" ]
    sum     := product (("+" | "-") product)*
    product := unary (("*" | "/") unary)*
    unary   := ("+" | "-") unary | primary
    primary := number | string | TRUE | FALSE | identifier | "(" or ")"

Evaluation is three-valued as JMS says: a missing header is NULL, and a
comparison with NULL is unknown, which does not select. STOMP headers are
strings; compared with a number literal, a header is converted as ActiveMQ
5.17 does (see `_converted`): `price > 10` selects price:12 but not
price:7.5 or price:abc, and arithmetic on a string is unknown. The JMS
headers JMSPriority, JMSTimestamp and JMSExpiration are numbers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

Value = str | int | float | bool | None
Headers = Mapping[str, Value]
Node = Callable[[Headers], Value]

SELECTOR_CHARS_MAX = 4096
# Parentheses, NOTs and signs nested deeper than this are refused: the parser
# and the compiled predicate recurse once per level, and Python's stack is
# bounded (300 parentheses would overflow it). Chains (a AND b AND ...,
# 1 + 2 + ...) are evaluated in a loop, so their length costs no depth.
SELECTOR_NESTING_MAX = 50


class SelectorError(ValueError):
    """A selector that does not parse; the message says where and why."""


_TOKEN = re.compile(
    r"""\s*(?:
      (?P<number>0[xX][0-9a-fA-F]+|(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?[lLfFdD]?)
    | (?P<string>'(?:[^']|'')*')
    | (?P<op><>|<=|>=|[=<>+\-*/(),])
    | (?P<name>[A-Za-z_$][A-Za-z0-9_$.]*)
    )""",
    re.VERBOSE,
)
_KEYWORDS = {"AND", "OR", "NOT", "BETWEEN", "IN", "LIKE", "ESCAPE", "IS", "NULL", "TRUE", "FALSE"}


def _tokens(text: str) -> list[tuple[str, str, int]]:
    out: list[tuple[str, str, int]] = []
    position = 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            start = len(text) - len(text[position:].lstrip())
            raise SelectorError(f"selector: unexpected {text[start : start + 10]!r} at {start}")
        kind = match.lastgroup or ""
        value = match.group(kind)
        start = match.start(kind)
        if kind == "name" and value.upper() in _KEYWORDS:
            kind, value = "keyword", value.upper()
        out.append((kind, value, start))
        position = match.end()
    out.append(("end", "", len(text)))
    return out


def _number(text: str) -> int | float:
    if text[:2].lower() == "0x":
        return int(text, 16)
    stripped = text.rstrip("lLfFdD")
    if any(c in stripped for c in ".eE") or text[-1:] in "fFdD":
        return float(stripped)
    return int(stripped)


def _is_number(value: Value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _compare(op: str, left: Value, right: Value) -> bool | None:
    if left is None or right is None:
        return None
    left, right = _converted(left, right), _converted(right, left)
    if (
        isinstance(left, int | float)
        and isinstance(right, int | float)
        and not isinstance(left, bool)
        and not isinstance(right, bool)
    ):
        # Python compares int with float exactly, without converting a
        # 400-digit integer to a float (which overflows).
        a, b = left, right
        return {
            "=": a == b,
            "<>": a != b,
            "<": a < b,
            ">": a > b,
            "<=": a <= b,
            ">=": a >= b,
        }[op]
    if type(left) is not type(right):
        return None  # string vs number, boolean vs string: unknown, as ActiveMQ does
    if op == "=":
        return left == right
    if op == "<>":
        return left != right
    return None  # JMS: strings and booleans compare only with = and <>


def _converted(value: Value, other: Value) -> Value:
    """A string compared with a number, as ActiveMQ 5.17 converts it (checked
    against the broker): to a long when the number is an integer ("10" = 10
    and "10" > 5 hold, "7.5" > 5 is unknown), to a double when it is a
    decimal. Arithmetic never converts ("10" + 1 is unknown)."""
    if not isinstance(value, str) or not _is_number(other):
        return value
    text = value.strip()
    try:
        if isinstance(other, int):
            return int(text) if re.fullmatch(r"[+-]?\d+", text) else value
        return float(text)
    except ValueError:
        return value


def _like_pattern(pattern: str, escape: str | None) -> re.Pattern[str]:
    out: list[str] = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if escape is not None and char == escape and index + 1 < len(pattern):
            out.append(re.escape(pattern[index + 1]))
            index += 2
            continue
        out.append(".*" if char == "%" else "." if char == "_" else re.escape(char))
        index += 1
    return re.compile("".join(out), re.DOTALL)


def _not(value: Value) -> Value:
    return None if value is None else not value


def _truth(value: Value) -> bool | None:
    return value if isinstance(value, bool) or value is None else None


def _kleene(a: bool | None, b: bool | None, decisive: bool) -> bool | None:
    """JMS's three-valued OR (`decisive` True) or AND (`decisive` False): either
    side being `decisive` decides; otherwise an unknown side makes it unknown."""
    if a is decisive or b is decisive:
        return decisive
    return None if a is None or b is None else not decisive


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.index = 0
        self.depth = 0

    def nest(self) -> None:
        """Enter one level of nesting (a parenthesis, NOT or sign); `unnest` leaves it."""
        self.depth += 1
        if self.depth > SELECTOR_NESTING_MAX:
            self.fail(f"nested deeper than {SELECTOR_NESTING_MAX} levels")

    def unnest(self) -> None:
        self.depth -= 1

    def peek(self) -> tuple[str, str, int]:
        return self.tokens[self.index]

    def take(self) -> tuple[str, str, int]:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def accept(self, kind: str, value: str) -> bool:
        token = self.peek()
        if token[0] == kind and token[1] == value:
            self.index += 1
            return True
        return False

    def expect(self, kind: str, value: str) -> None:
        if not self.accept(kind, value):
            self.fail(f"expected {value!r}")

    def fail(self, why: str) -> None:
        _, value, position = self.peek()
        found = repr(value) if value else "the end"
        raise SelectorError(f"selector {self.text!r}: {why} at {position}, found {found}")

    def parse(self) -> Node:
        node = self.or_()
        if self.peek()[0] != "end":
            self.fail("expected the end")
        return node

    def or_(self) -> Node:
        return self.logical_chain("OR", self.and_, decisive=True)

    def and_(self) -> Node:
        return self.logical_chain("AND", self.not_, decisive=False)

    def logical_chain(self, keyword: str, operand: Callable[[], Node], decisive: bool) -> Node:
        """operand (keyword operand)*, combined left to right by `_kleene`."""
        operands = [operand()]
        while self.accept("keyword", keyword):
            operands.append(operand())
        if len(operands) == 1:
            return operands[0]

        def combined(h: Headers) -> Value:
            result = _truth(operands[0](h))
            for node in operands[1:]:
                result = _kleene(result, _truth(node(h)), decisive)
            return result

        return combined

    def not_(self) -> Node:
        if self.accept("keyword", "NOT"):
            self.nest()
            inner = self.not_()
            self.unnest()
            return lambda h: _not(_truth(inner(h)))
        return self.test()

    def string(self) -> str:
        kind, value, _ = self.peek()
        if kind != "string":
            self.fail("expected a string literal")
        self.index += 1
        return value[1:-1].replace("''", "'")

    def test(self) -> Node:
        left = self.sum()
        kind, value, _ = self.peek()
        if kind == "op" and value in ("=", "<>", "<", ">", "<=", ">="):
            self.index += 1
            right = self.sum()
            return lambda h: _compare(value, left(h), right(h))
        negate = self.accept("keyword", "NOT")
        if self.accept("keyword", "BETWEEN"):
            low = self.sum()
            self.expect("keyword", "AND")
            high = self.sum()

            def between(h: Headers) -> Value:
                v = left(h)
                # low <= v AND v <= high, in three values.
                result = _kleene(_compare(">=", v, low(h)), _compare("<=", v, high(h)), False)
                return _not(result) if negate else result

            return between
        if self.accept("keyword", "IN"):
            self.expect("op", "(")
            options = {self.string()}
            while self.accept("op", ","):
                options.add(self.string())
            self.expect("op", ")")

            def within(h: Headers) -> Value:
                v = left(h)
                if v is None:
                    return None
                result = isinstance(v, str) and v in options
                return not result if negate else result

            return within
        if self.accept("keyword", "LIKE"):
            pattern = self.string()
            escape = None
            if self.accept("keyword", "ESCAPE"):
                escape = self.string()
                if len(escape) != 1:
                    self.fail("ESCAPE takes one character")
            compiled = _like_pattern(pattern, escape)

            def like(h: Headers) -> Value:
                v = left(h)
                if not isinstance(v, str):
                    return None
                result = compiled.fullmatch(v) is not None
                return not result if negate else result

            return like
        if negate:
            self.fail("expected BETWEEN, IN or LIKE after NOT")
        if self.accept("keyword", "IS"):
            negate = self.accept("keyword", "NOT")
            self.expect("keyword", "NULL")
            return lambda h: (left(h) is not None) if negate else (left(h) is None)
        return left

    def sum(self) -> Node:
        return self.arithmetic_chain("+-", self.product)

    def product(self) -> Node:
        return self.arithmetic_chain("*/", self.unary)

    def arithmetic_chain(self, ops: str, operand: Callable[[], Node]) -> Node:
        """operand (op operand)* for the one-character operators in `ops`, left to right."""
        first = operand()
        rest: list[tuple[str, Node]] = []
        while True:
            kind, value, _ = self.peek()
            if kind != "op" or value not in ops:
                break
            self.index += 1
            rest.append((value, operand()))
        if not rest:
            return first

        def apply(h: Headers) -> Value:
            result = first(h)
            for op, node in rest:
                result = _arithmetic(op, result, node(h))
            return result

        return apply

    def unary(self) -> Node:
        if self.accept("op", "-"):
            self.nest()
            inner = self.unary()
            self.unnest()
            return lambda h: -v if _is_number(v := inner(h)) else None  # type: ignore[operator]
        if self.accept("op", "+"):
            self.nest()
            node = self.unary()
            self.unnest()
            return node
        return self.primary()

    def primary(self) -> Node:
        kind, value, _ = self.peek()
        if kind == "number":
            self.index += 1
            number = _number(value)
            return lambda h: number
        if kind == "string":
            text = self.string()
            return lambda h: text
        if kind == "keyword" and value in ("TRUE", "FALSE"):
            self.index += 1
            flag = value == "TRUE"
            return lambda h: flag
        if kind == "name":
            self.index += 1
            return lambda h: h.get(value)
        if self.accept("op", "("):
            self.nest()
            node = self.or_()
            self.expect("op", ")")
            self.unnest()
            return node
        self.fail("expected a value, a name or '('")
        raise AssertionError("unreachable")


def _arithmetic(op: str, a: Value, b: Value) -> Value:
    """a op b for numbers; unknown (None) for anything else, a division by
    zero, or a result no float can hold (a 400-digit integer plus 0.5)."""
    if not (_is_number(a) and _is_number(b)):
        return None
    x: int | float = a  # type: ignore[assignment]
    y: int | float = b  # type: ignore[assignment]
    try:
        if op == "+":
            return x + y
        if op == "-":
            return x - y
        if op == "*":
            return x * y
        if y == 0:
            return None
        if isinstance(x, int) and isinstance(y, int):
            quotient = abs(x) // abs(y)  # Java's long division truncates toward zero
            return quotient if (x < 0) == (y < 0) else -quotient
        return x / y
    except OverflowError:
        return None


def compile_selector(text: str) -> Callable[[Headers], bool]:
    """A predicate for `text`; True only when the selector is TRUE (not unknown).

    Raises SelectorError naming the position for a selector that does not
    parse, or one longer than 4096 characters.
    """
    if len(text) > SELECTOR_CHARS_MAX:
        raise SelectorError(f"selector: {len(text)} characters, over {SELECTOR_CHARS_MAX}")
    if not text.strip():
        raise SelectorError("selector: empty")
    node = _Parser(text).parse()
    return lambda headers: node(headers) is True
