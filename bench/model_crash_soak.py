#!/usr/bin/env python3
"""Crash soak of the models: SIGKILL a child sending, receiving, deleting, putting, publishing.

    python bench/model_crash_soak.py --rounds 1000      # 1,000 kills
    python bench/model_crash_soak.py --rounds 20 --seed 7 --keep

The child works on one store (sync="always"): a queue (send, receive with a
lease, delete), a stream (put), and a topic fanned out to three raw queue
subscriptions (publish). It writes an acknowledgement line after each call
returns. After each kill, a copy of the directory is opened (so that checks
never change the state the next child continues from), with a clock two
hours ahead so that every lease has expired, and checked:

- every acknowledged send that was not acknowledged as deleted is receivable;
- no acknowledged delete is receivable (no resurrection);
- every acknowledged stream put is at its sequence number with its data;
- every acknowledged publish is in all three subscriptions (unless deleted
  there), and any publish found in one subscription is in all three (atomic
  fan-out);
- nothing receivable was never sent; `store.check()` is clean.

The first failed check stops the run with its seed and round; exit status 1.
"""

from __future__ import annotations

import argparse
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import tidelog

CHILD = r"""
import os, random, sys, time
import tidelog

path, ack_path, seed, round_no = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
fd = os.open(ack_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

def say(line):
    os.write(fd, (line + "\n").encode())

# SOAK_SYNC=never checks that the soak catches losses (it must then fail).
store = tidelog.open(path, sync=os.environ.get("SOAK_SYNC", "always"))
queue = store.create_queue("jobs", exist_ok=True)
stream = store.create_stream("events", exist_ok=True)
topic = store.create_topic("orders", exist_ok=True)
subs = [store.create_queue(f"sub{i}", exist_ok=True) for i in range(3)]
for sub in subs:
    topic.subscribe(sub, raw=True)
rng = random.Random(seed)
say("ready")
n = 0
while True:
    n += 1
    tag = f"{round_no}.{n}"
    choice = rng.random()
    if choice < 0.3:
        batch = [f"m{tag}.{i}".encode() for i in range(rng.choice([1, 1, 10]))]
        if len(batch) == 1:
            queue.send(batch[0])
        else:
            queue.send_many(batch)
        say("send " + " ".join(b.decode() for b in batch))
    elif choice < 0.55:
        messages = queue.receive(max_messages=rng.choice([1, 10]), visibility_timeout=60)
        keep = [m for m in messages if rng.random() < 0.8]
        if keep:
            say("recv " + " ".join(m.body.decode() for m in keep))
        if len(keep) > 1 and rng.random() < 0.5:
            result = queue.delete_many([m.receipt for m in keep])
            say("del " + " ".join(m.body.decode() for m in keep))
        else:
            for m in keep:
                queue.delete(m.receipt)
                say("del " + m.body.decode())
    elif choice < 0.75:
        data = f"s{tag}".encode()
        result = stream.put(data, partition_key=tag)
        say(f"put {result.sequence_number} {data.decode()}")
    elif choice < 0.9:
        body = f"p{tag}"
        topic.publish(body)
        say("pub " + body)
    else:
        sub = rng.randrange(3)
        messages = subs[sub].receive(max_messages=5, visibility_timeout=60)
        if messages:
            say(f"subrecv {sub} " + " ".join(m.body.decode() for m in messages))
        for m in messages:
            subs[sub].delete(m.receipt)
            say(f"subdel {sub} {m.body.decode()}")
"""

LEASE_SKIP_S = 7200.0


class Soak:
    def __init__(self, workdir: Path, seed: int) -> None:
        self.workdir = workdir
        self.rng = random.Random(seed)
        self.seed = seed
        self.data = workdir / "data"
        self.script = workdir / "child.py"
        self.script.write_text(CHILD)
        self.sent: set[str] = set()
        self.acked_sends: set[str] = set()
        self.deleted: set[str] = set()
        self.puts: dict[str, str] = {}
        self.pubs: set[str] = set()
        self.sub_deleted: list[set[str]] = [set(), set(), set()]
        # Bodies whose delete may have been in flight at a kill (the round's last
        # receive before its deletes were all acknowledged): present or not.
        self.maybe_deleted: set[str] = set()
        self.sub_maybe_deleted: list[set[str]] = [set(), set(), set()]
        self.kills = 0
        self.acked_ops = 0

    def where(self, round_no: int) -> str:
        return f"(seed={self.seed} round={round_no})"

    def run_round(self, round_no: int) -> None:
        ack = self.workdir / f"ack-{round_no}"
        err = self.workdir / "stderr"
        with open(err, "wb") as err_file:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    str(self.script),
                    str(self.data),
                    str(ack),
                    str(self.rng.getrandbits(32)),
                    str(round_no),
                ],
                stdout=subprocess.DEVNULL,
                stderr=err_file,
            )
        try:
            if self.rng.random() < 0.1:
                time.sleep(self.rng.uniform(0.0, 0.4))  # during open and recovery
            else:
                deadline = time.monotonic() + 60
                while not (ack.exists() and ack.read_bytes().startswith(b"ready")):
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise AssertionError(
                            f"child not ready {self.where(round_no)}: {err.read_text()[-3000:]}"
                        )
                    time.sleep(0.005)
                time.sleep(self.rng.uniform(0.0, 0.4))
        finally:
            proc.kill()
            proc.wait()
        if proc.returncode != -signal.SIGKILL:
            raise AssertionError(
                f"child exited with {proc.returncode} {self.where(round_no)}: "
                f"{err.read_text()[-3000:]}"
            )
        self.kills += 1
        self.absorb(ack)
        self.verify(round_no)

    def absorb(self, ack: Path) -> None:
        """Take in a round's acknowledgement lines."""
        text = ack.read_text() if ack.exists() else ""
        lines = text.splitlines()
        if text and not text.endswith("\n"):
            lines = lines[:-1]  # a line torn by the kill: its call did not return for sure
        last_recv: set[str] = set()
        last_sub_recv: tuple[int, set[str]] | None = None
        for line in lines:
            kind, _, rest = line.partition(" ")
            if kind == "recv":
                last_recv = set(rest.split())
                continue
            if kind == "subrecv":
                sub_text, _, bodies = rest.partition(" ")
                last_sub_recv = (int(sub_text), set(bodies.split()))
                continue
            if kind == "send":
                self.acked_sends.update(rest.split())
            elif kind == "del":
                self.deleted.update(rest.split())
            elif kind == "put":
                seq, data = rest.split()
                self.puts[seq] = data
            elif kind == "pub":
                self.pubs.add(rest)
            elif kind == "subdel":
                sub, body = rest.split()
                self.sub_deleted[int(sub)].add(body)
            self.acked_ops += kind != "ready"
        self.maybe_deleted |= last_recv - self.deleted
        if last_sub_recv is not None:
            self.sub_maybe_deleted[last_sub_recv[0]] |= (
                last_sub_recv[1] - self.sub_deleted[last_sub_recv[0]]
            )
        ack.unlink(missing_ok=True)

    def verify(self, round_no: int, source: Path | None = None) -> None:
        where = self.where(round_no)
        source = source or self.data
        if not source.exists():
            if self.acked_ops:
                raise AssertionError(f"the store directory is gone {where}")
            return
        copy = self.workdir / "copy"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(source, copy)
        with tidelog.open(copy, clock=lambda: time.time() + LEASE_SKIP_S) as store:
            names = {q.name for q in store.queues()}
            if "jobs" not in names:
                if self.acked_sends:
                    raise AssertionError(f"queue jobs lost {where}")
                return
            found = _drain(store.queue("jobs"))
            missing = self.acked_sends - self.deleted - self.maybe_deleted - found
            if missing:
                raise AssertionError(f"acknowledged sends lost: {sorted(missing)[:5]} {where}")
            resurrected = found & self.deleted
            if resurrected:
                raise AssertionError(
                    f"acknowledged deletes resurrected: {sorted(resurrected)[:5]} {where}"
                )
            stray = {b for b in found if not b.startswith("m")}
            if stray:
                raise AssertionError(f"messages never sent: {sorted(stray)[:5]} {where}")
            if self.puts or "events" in {s.name for s in store.streams()}:
                got = {r.sequence_number: r.data.decode() for r in store.stream("events").read(0)}
                for seq, data in self.puts.items():
                    if got.get(seq) != data:
                        raise AssertionError(
                            f"acknowledged put {seq} {data} lost: {got.get(seq)} {where}"
                        )
            subs = [_drain(store.queue(f"sub{i}")) for i in range(3) if f"sub{i}" in names]
            if len(subs) == 3:
                for i, found_sub in enumerate(subs):
                    missing = (
                        self.pubs - self.sub_deleted[i] - self.sub_maybe_deleted[i] - found_sub
                    )
                    if missing:
                        raise AssertionError(
                            f"sub{i}: acknowledged publishes lost {sorted(missing)[:5]} {where}"
                        )
                    resurrected = found_sub & self.sub_deleted[i]
                    if resurrected:
                        raise AssertionError(
                            f"sub{i}: deletes resurrected {sorted(resurrected)[:5]} {where}"
                        )
                every = set().union(*subs)
                for i, found_sub in enumerate(subs):
                    gone = self.sub_deleted[i] | self.sub_maybe_deleted[i]
                    partial = every - found_sub - gone
                    # A publish another subscription holds must be here too (atomic fan-out);
                    # only a delete of this subscription's copy may have removed it.
                    if partial:
                        raise AssertionError(
                            f"sub{i}: fan-out not atomic {sorted(partial)[:5]} {where}"
                        )
            problems = store.check()
            if problems:
                raise AssertionError(f"store.check(): {problems[:3]} {where}")
        shutil.rmtree(copy, ignore_errors=True)


def _drain(queue: tidelog.Queue) -> set[str]:
    bodies: set[str] = set()
    while True:
        messages = queue.receive(max_messages=10, visibility_timeout=43200)
        if not messages:
            return bodies
        bodies.update(m.body.decode() for m in messages)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--data", default=None)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    workdir = Path(tempfile.mkdtemp(prefix="model_crash_soak-", dir=args.data))
    soak = Soak(workdir, seed)
    return drive(soak, args.rounds, 50, "kills", lambda: soak.kills, workdir, args.keep)


def drive(
    soak: Soak,
    rounds: int,
    every: int,
    noun: str,
    count: Callable[[], int],
    workdir: Path,
    keep: bool,
) -> int:
    """Run `rounds` rounds of `soak`, with progress every `every` rounds; print the
    verdict (what was acknowledged, and 0 lost / 0 resurrected when it held) and
    keep `workdir` on a failure or when asked. Shared with lazyfs_soak.py."""
    started = time.monotonic()
    ok = True
    try:
        for round_no in range(rounds):
            soak.run_round(round_no)
            if (round_no + 1) % every == 0:
                print(
                    f"  {round_no + 1}/{rounds} {noun}, {soak.acked_ops} acknowledged ops",
                    file=sys.stderr,
                    flush=True,
                )
    except AssertionError as exc:
        ok = False
        print(f"FAILED seed={soak.seed} after {count()} {noun}:\n{exc}")
    print(
        f"{'ok' if ok else 'FAILED'}: {count()} {noun} in {time.monotonic() - started:.0f} s, "
        f"seed {soak.seed}: {soak.acked_ops} acknowledged ops ({len(soak.acked_sends)} sends, "
        f"{len(soak.deleted)} deletes, {len(soak.puts)} stream puts, {len(soak.pubs)} publishes "
        "to 3 subscriptions)" + ("; 0 acknowledged ops lost, 0 deletes resurrected" if ok else "")
    )
    if ok and not keep:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"data kept in {workdir}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
