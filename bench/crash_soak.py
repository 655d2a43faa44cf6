#!/usr/bin/env python3
"""Crash soak: SIGKILL a sync="always" writer many times, verify after each kill.

    python bench/crash_soak.py --rounds 500               # every mode, 500 kills each
    python bench/crash_soak.py --rounds 200 --mode fanout # multi-log transactions only
    python bench/crash_soak.py --seed 42 --keep           # replay choices, keep the data

The longer run of `tests/test_crash.py`, with its harness (the child script and
every check) loaded from that file, so the soak and the CI test cannot drift
apart. After each kill the data directory is reopened and checked: every
acknowledged append present byte for byte at its offset, offsets contiguous,
append_many and transactions all-or-nothing, `store.check()` clean, and a
recovery report that lost nothing. The first failed check stops the run and
prints its seed and round; exit status 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
MODES = ("single", "threads", "fanout")  # see CrashHarness in tests/test_crash.py


def load_harness() -> ModuleType:
    path = ROOT / "tests" / "test_crash.py"
    spec = importlib.util.spec_from_file_location("tidelog_crash_harness", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load the crash harness from {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def soak(harness_module: ModuleType, workdir: Path, mode: str, seed: int, rounds: int) -> bool:
    harness = harness_module.CrashHarness(workdir, mode, seed)
    started = time.monotonic()
    ok = True
    try:
        for round_no in range(rounds):
            harness.run_round(round_no)
            if (round_no + 1) % 50 == 0:
                print(
                    f"  {mode}: {round_no + 1}/{rounds} rounds, {harness.stats.records} records",
                    file=sys.stderr,
                    flush=True,
                )
    except AssertionError as exc:
        ok = False
        print(f"FAILED {mode} seed={seed} after {harness.stats.rounds} rounds:\n{exc}")
    seconds = time.monotonic() - started
    print(f"{mode}: {'ok' if ok else 'FAILED'} in {seconds:.1f} s (seed {seed}, dir {workdir})")
    for name, value in dataclasses.asdict(harness.stats).items():
        print(f"  {name:28} {value}")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=200, help="kills per mode (default 200)")
    parser.add_argument("--mode", choices=[*MODES, "all"], default="all")
    parser.add_argument("--seed", type=int, default=None, help="default: random, printed")
    parser.add_argument("--data", default=None, help="parent directory for scratch data")
    parser.add_argument("--keep", action="store_true", help="keep the data directories")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 32)
    modes = list(MODES) if args.mode == "all" else [args.mode]
    harness_module = load_harness()
    root = Path(tempfile.mkdtemp(prefix="tidelog-soak-", dir=args.data))
    ok = True
    try:
        for mode in modes:
            workdir = root / mode
            workdir.mkdir()
            ok = soak(harness_module, workdir, mode, seed, args.rounds) and ok
    finally:
        if args.keep or not ok:
            print(f"data kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
