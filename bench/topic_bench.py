#!/usr/bin/env python3
"""tidelog topic benchmark: fan-out cost beside plain queue sends, and filter speed.

    python bench/topic_bench.py              # full run
    python bench/topic_bench.py --quick      # small counts (well under a minute)
    python bench/topic_bench.py --json       # JSON on stdout (the table goes to stderr)

Cases, each in sync="always" (durable, fsync-bound) and sync="never" (CPU
cost only), 100-byte messages with 5 attributes:

- one `queue.send` (the baseline: one commit, one log);
- 10 separate `queue.send` calls to 10 queues (10 commits);
- `topic.publish` to 1, 10 and 100 subscribed queues, without filters and
  with a 5-key filter policy that every message matches (one commit each);
- filter evaluation alone: a compiled 5-key policy against one message.

Then the issue-15 comparison, durable: `topic.publish` to 10 subscribed
queues beside one `queue.send`, interleaved in short slices (SLICE_OPS
calls each, alternating, SLICES rounds), the ratio of the two totals, median
of 3; and, beside it, draining what was published (receive + delete from
each subscribed queue, read through its view) against draining as many
messages sent to a queue directly.

Targets: issue 15, publish to 10 queues <= 1.5x one send; issue 5, filter
evaluation >= 200,000/s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import tidelog
from tidelog.queues import AttributeValue
from tidelog.topic_filters import FilterPolicy, attribute_view

BODY = b"x" * 100
ATTRIBUTES: dict[str, Any] = {
    "store": "example_corp",
    "event": "order_placed",
    "customer_interests": ["soccer", "rugby"],
    "price_usd": 210.75,
    "source_ip": "10.0.0.1",
}
POLICY: dict[str, Any] = {
    "store": ["example_corp"],
    "event": [{"anything-but": "order_cancelled"}],
    "customer_interests": ["rugby", "football", "baseball"],
    "price_usd": [{"numeric": [">=", 100]}],
    "source_ip": [{"prefix": "10."}],
}


def per_op_ms(count: int, fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    for _ in range(count):
        fn()
    return (time.perf_counter() - started) * 1000 / count


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def store_cases(root: str, sync: str, count: int, repeats: int) -> dict[str, float]:
    out: dict[str, list[float]] = {}
    path = os.path.join(root, f"tl-{sync}")
    with tidelog.open(path, sync=sync) as store:  # type: ignore[arg-type]
        queues = [store.create_queue(f"q{i}") for i in range(100)]
        topics = {}
        for fanout in (1, 10, 100):
            for filtered in (False, True):
                topic = store.create_topic(f"t{fanout}{'f' if filtered else ''}")
                for queue in queues[:fanout]:
                    topic.subscribe(queue, filter_policy=POLICY if filtered else None, raw=True)
                topics[(fanout, filtered)] = topic
        one = queues[0]
        for _ in range(repeats):
            out.setdefault("send x1", []).append(
                per_op_ms(count, lambda: one.send(BODY, ATTRIBUTES | {"customer_interests": "x"}))
            )

            def ten_sends() -> None:
                for queue in queues[:10]:
                    queue.send(BODY, {"store": "example_corp"})

            out.setdefault("10 separate sends", []).append(
                per_op_ms(max(1, count // 10), ten_sends)
            )
            for (fanout, filtered), topic in topics.items():
                n = max(1, count // max(1, fanout // 10))
                name = f"publish -> {fanout} queues{' (5-key filter)' if filtered else ''}"
                out.setdefault(name, []).append(
                    per_op_ms(n, lambda topic=topic: topic.publish(BODY, ATTRIBUTES))  # type: ignore[misc]
                )
            for queue in queues:
                queue.purge()
    shutil.rmtree(path, ignore_errors=True)
    return {name: median(values) for name, values in out.items()}


SLICE_OPS = 20
SLICES = 10


def interleaved(root: str, slices: int, repeats: int) -> dict[str, float]:
    """publish -> 10 queues against one send, and their drains, in alternating slices."""
    path = os.path.join(root, "tl-interleaved")
    ratios: list[float] = []
    drain_ratios: list[float] = []
    totals = {"send": 0.0, "publish": 0.0, "drain sent": 0.0, "drain published": 0.0}
    with tidelog.open(path, sync="always") as store:
        direct = store.create_queue("direct")
        subscribed = [store.create_queue(f"s{i}") for i in range(10)]
        topic = store.create_topic("fanout")
        for queue in subscribed:
            topic.subscribe(queue, raw=True)

        def send() -> None:
            direct.send(BODY, ATTRIBUTES | {"customer_interests": "x"})

        def publish() -> None:
            topic.publish(BODY, ATTRIBUTES)

        def drain(queues: list[tidelog.Queue], count: int) -> float:
            started = time.perf_counter()
            for queue in queues:
                left = count
                while left:
                    got = queue.receive(10)
                    if not got:
                        raise RuntimeError(f"{queue.name}: {left} messages missing")
                    queue.delete_many([m.receipt for m in got])
                    left -= len(got)
            return time.perf_counter() - started

        for _ in range(repeats):
            spent = {"send": 0.0, "publish": 0.0, "drain sent": 0.0, "drain published": 0.0}
            # Alternate which contender goes first, so neither always follows the other.
            for index in range(slices):
                pair = [("send", send), ("publish", publish)]
                for name, fn in pair if index % 2 == 0 else pair[::-1]:
                    spent[name] += per_op_ms(SLICE_OPS, fn)
            for _ in range(slices * 9):  # as many direct messages as view messages
                per_op_ms(SLICE_OPS, send)
            for index in range(slices):
                # Drain the same number each way: 10 x SLICE_OPS messages a slice.
                pair2 = [("drain sent", [direct], 10), ("drain published", subscribed, 1)]
                for name, queues, times in pair2 if index % 2 == 0 else pair2[::-1]:
                    spent[name] += drain(queues, times * SLICE_OPS)
            ratios.append(spent["publish"] / spent["send"])
            drain_ratios.append(spent["drain published"] / spent["drain sent"])
            for name, value in spent.items():
                totals[name] += value
    shutil.rmtree(path, ignore_errors=True)
    calls = repeats * slices
    return {
        "send ms": totals["send"] / calls,
        "publish -> 10 ms": totals["publish"] / calls,
        "publish / send": median(ratios),
        "drain published / drain sent": median(drain_ratios),
    }


def filter_rate(evaluations: int) -> float:
    policy = FilterPolicy(POLICY)
    typed = {
        "store": AttributeValue("String", "example_corp"),
        "event": AttributeValue("String", "order_placed"),
        "customer_interests": AttributeValue("String.Array", '["soccer", "rugby"]'),
        "price_usd": AttributeValue("Number", "210.75"),
        "source_ip": AttributeValue("String", "10.0.0.1"),
    }
    view = attribute_view(typed)
    matches = policy.matches
    assert matches(view)
    started = time.perf_counter()
    for _ in range(evaluations):
        matches(view)
    return evaluations / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    count, repeats = (20, 1) if args.quick else (100, 3)
    root = tempfile.mkdtemp(prefix="topic-bench-")
    results: dict[str, Any] = {}
    try:
        for sync in ("always", "never"):
            results[sync] = store_cases(
                root, sync, count if sync == "always" else count * 5, repeats
            )
        results["interleaved"] = interleaved(root, 3 if args.quick else SLICES, repeats)
        results["filter evaluations/s"] = median(
            [filter_rate(100_000 if args.quick else 500_000) for _ in range(repeats)]
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    for sync in ("always", "never"):
        send = results[sync]["send x1"]
        results[sync]["fan-out 10 / one send"] = results[sync]["publish -> 10 queues"] / send
    out = sys.stderr if args.json else sys.stdout
    for sync in ("always", "never"):
        print(f"\nsync={sync!r}: milliseconds per call (median of {repeats})", file=out)
        for name, value in results[sync].items():
            unit = "x" if name.startswith("fan-out") else "ms"
            print(f"  {name:<40} {value:9.3f} {unit}", file=out)
    inter = results["interleaved"]
    print(
        f"\ninterleaved, sync='always' ({SLICE_OPS} calls a slice, median of {repeats}):\n"
        f"  one send                    {inter['send ms']:9.3f} ms\n"
        f"  publish -> 10 queues        {inter['publish -> 10 ms']:9.3f} ms\n"
        f"  publish / send              {inter['publish / send']:9.3f} x (target <= 1.5)\n"
        f"  drain published / sent      {inter['drain published / drain sent']:9.3f} x "
        "(receive + delete of 10 x as many messages)",
        file=out,
    )
    print(
        f"\nfilter evaluations/s: {results['filter evaluations/s']:,.0f} (target 200,000)", file=out
    )
    if args.json:
        json.dump(results, sys.stdout, indent=2)
        print()


if __name__ == "__main__":
    main()
