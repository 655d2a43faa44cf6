"""SNS filter-policy conformance table: one match and one no-match per operator.

Policies and messages are AWS's documented examples (SNS Developer Guide:
"String value matching", "Numeric value matching", "Key matching",
"AND/OR logic", "Example filter policies"). A message is either attributes
as SNS shows them ({"Type": ..., "Value": ...}) or a JSON body.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class Case(NamedTuple):
    operator: str
    policy: dict[str, Any]
    scope: str  # "attributes" or "body"
    message: dict[str, Any]  # attributes {name: {"Type", "Value"}} or the body object
    matches: bool

    @property
    def id(self) -> str:
        return f"{self.operator}-{'match' if self.matches else 'no-match'}"


def S(value: str) -> dict[str, str]:  # noqa: N802 - reads like SNS's {"Type": "String"}
    return {"Type": "String", "Value": value}


def N(value: str) -> dict[str, str]:  # noqa: N802
    return {"Type": "Number", "Value": value}


def SA(value: str) -> dict[str, str]:  # noqa: N802
    return {"Type": "String.Array", "Value": value}


A = "attributes"
B = "body"

CASES: list[Case] = [
    # Exact string matching.
    Case("exact-string", {"customer_interests": ["rugby", "tennis"]}, A,
         {"customer_interests": S("rugby")}, True),
    Case("exact-string", {"customer_interests": ["rugby", "tennis"]}, A,
         {"customer_interests": S("baseball")}, False),
    # String.Array attributes: each element is a value.
    Case("string-array", {"customer_interests": ["rugby", "tennis"]}, A,
         {"customer_interests": SA('["rugby", "tennis"]')}, True),
    Case("string-array", {"customer_interests": ["rugby", "tennis"]}, A,
         {"customer_interests": SA('["baseball"]')}, False),
    # Exact numeric matching.
    Case("numeric-equals", {"price_usd": [{"numeric": ["=", 301.5]}]}, A,
         {"price_usd": N("3.015e2")}, True),
    Case("numeric-equals", {"price_usd": [{"numeric": ["=", 301.5]}]}, A,
         {"price_usd": N("300")}, False),
    # Numeric value as an exact literal in the list.
    Case("exact-number", {"price_usd": [301.5]}, B, {"price_usd": 301.5}, True),
    Case("exact-number", {"price_usd": [301.5]}, B, {"price_usd": 300}, False),
    # Numeric range.
    Case("numeric-range", {"price_usd": [{"numeric": [">", 0, "<=", 150]}]}, A,
         {"price_usd": N("150")}, True),
    Case("numeric-range", {"price_usd": [{"numeric": [">", 0, "<=", 150]}]}, A,
         {"price_usd": N("151")}, False),
    Case("numeric-less-than", {"price_usd": [{"numeric": ["<", 0]}]}, A,
         {"price_usd": N("-1")}, True),
    Case("numeric-less-than", {"price_usd": [{"numeric": ["<", 0]}]}, A,
         {"price_usd": N("0")}, False),
    # Prefix and suffix.
    Case("prefix", {"customer_interests": [{"prefix": "bas"}]}, A,
         {"customer_interests": S("baseball")}, True),
    Case("prefix", {"customer_interests": [{"prefix": "bas"}]}, A,
         {"customer_interests": S("rugby")}, False),
    Case("suffix", {"customer_interests": [{"suffix": "ball"}]}, A,
         {"customer_interests": S("basketball")}, True),
    Case("suffix", {"customer_interests": [{"suffix": "ball"}]}, A,
         {"customer_interests": S("rugby")}, False),
    # Anything-but: a list, a single value, a prefix, a suffix.
    Case("anything-but-list", {"customer_interests": [{"anything-but": ["rugby", "tennis"]}]}, A,
         {"customer_interests": S("baseball")}, True),
    Case("anything-but-list", {"customer_interests": [{"anything-but": ["rugby", "tennis"]}]}, A,
         {"customer_interests": S("rugby")}, False),
    Case("anything-but-string-array",
         {"customer_interests": [{"anything-but": ["rugby", "tennis"]}]}, A,
         {"customer_interests": SA('["rugby", "baseball"]')}, True),
    Case("anything-but-string-array",
         {"customer_interests": [{"anything-but": ["rugby", "tennis"]}]}, A,
         {"customer_interests": SA('["rugby", "tennis"]')}, False),
    Case("anything-but-value", {"customer_interests": [{"anything-but": "rugby"}]}, A,
         {"customer_interests": S("football")}, True),
    Case("anything-but-value", {"customer_interests": [{"anything-but": "rugby"}]}, A,
         {"customer_interests": S("rugby")}, False),
    Case("anything-but-number", {"price_usd": [{"anything-but": [100, 500]}]}, A,
         {"price_usd": N("200")}, True),
    Case("anything-but-number", {"price_usd": [{"anything-but": [100, 500]}]}, A,
         {"price_usd": N("500")}, False),
    Case("anything-but-prefix", {"event": [{"anything-but": {"prefix": "order-"}}]}, A,
         {"event": S("data-entry")}, True),
    Case("anything-but-prefix", {"event": [{"anything-but": {"prefix": "order-"}}]}, A,
         {"event": S("order-cancelled")}, False),
    Case("anything-but-suffix", {"customer_interests": [{"anything-but": {"suffix": "ball"}}]}, A,
         {"customer_interests": S("rugby")}, True),
    Case("anything-but-suffix", {"customer_interests": [{"anything-but": {"suffix": "ball"}}]}, A,
         {"customer_interests": S("baseball")}, False),
    # equals-ignore-case.
    Case("equals-ignore-case", {"customer_interests": [{"equals-ignore-case": "tennis"}]}, A,
         {"customer_interests": S("TENNIS")}, True),
    Case("equals-ignore-case", {"customer_interests": [{"equals-ignore-case": "tennis"}]}, A,
         {"customer_interests": S("baseball")}, False),
    # IP address matching.
    Case("cidr", {"source_ip": [{"cidr": "10.0.0.0/24"}]}, A, {"source_ip": S("10.0.0.255")}, True),
    Case("cidr", {"source_ip": [{"cidr": "10.0.0.0/24"}]}, A, {"source_ip": S("10.1.1.0")}, False),
    # Key matching.
    Case("exists-true", {"store": [{"exists": True}]}, A,
         {"store": S("fans"), "customer_interests": SA('["baseball", "basketball"]')}, True),
    Case("exists-true", {"store": [{"exists": True}]}, A,
         {"customer_interests": SA('["baseball", "basketball"]')}, False),
    Case("exists-false", {"store": [{"exists": False}]}, A,
         {"customer_interests": SA('["baseball", "basketball"]')}, True),
    Case("exists-false", {"store": [{"exists": False}]}, A,
         {"store": S("fans"), "customer_interests": SA('["baseball", "basketball"]')}, False),
    # AND across keys.
    Case("and", {"customer_interests": ["rugby"], "price_usd": [{"numeric": [">", 100]}]}, A,
         {"customer_interests": S("rugby"), "price_usd": N("210.75")}, True),
    Case("and", {"customer_interests": ["rugby"], "price_usd": [{"numeric": [">", 100]}]}, A,
         {"customer_interests": S("rugby"), "price_usd": N("99")}, False),
    # $or.
    Case("or-operator",
         {"source": ["aws.cloudwatch"],
          "$or": [{"metricName": ["CPUUtilization"]}, {"namespace": ["AWS/EC2"]}]}, A,
         {"source": S("aws.cloudwatch"), "namespace": S("AWS/EC2")}, True),
    Case("or-operator",
         {"source": ["aws.cloudwatch"],
          "$or": [{"metricName": ["CPUUtilization"]}, {"namespace": ["AWS/EC2"]}]}, A,
         {"source": S("aws.cloudwatch"), "namespace": S("AWS/RDS")}, False),
    # Nested keys on the message body (payload-based filtering).
    Case("nested-body", {"store": {"location": ["Paris"]}, "price_usd": [{"numeric": [">=", 100]}]},
         B, {"store": {"location": "Paris", "name": "example_corp"}, "price_usd": 210.75}, True),
    Case("nested-body", {"store": {"location": ["Paris"]}, "price_usd": [{"numeric": [">=", 100]}]},
         B, {"store": {"location": "Lyon", "name": "example_corp"}, "price_usd": 210.75}, False),
    # A body array counts as several values.
    Case("body-array", {"customer_interests": ["rugby"]}, B,
         {"customer_interests": ["soccer", "rugby", "hockey"]}, True),
    Case("body-array", {"customer_interests": ["rugby"]}, B,
         {"customer_interests": ["soccer", "hockey"]}, False),
]  # fmt: skip
