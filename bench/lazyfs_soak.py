#!/usr/bin/env python3
"""Power-cut soak on LazyFS: everything not fsynced is lost, LMDB's own writes included.

    python bench/lazyfs_soak.py --rounds 100
    python bench/lazyfs_soak.py --rounds 5 --seed 3 --keep

Needs root, /dev/fuse, libfuse3 and ../shared/tools/lazyfs (see its README).
Each round mounts LazyFS over one backing directory that lives across rounds,
runs the child of bench/model_crash_soak.py on the mount (queue sends,
receives and deletes, stream puts, topic fan-out publishes, sync="always"),
freezes it with SIGSTOP after a random time, drops LazyFS's cache of
unsynced data (`lazyfs::clear-cache`: a power cut), kills the child,
unmounts, and checks a copy of what is left exactly as the kill soak does:
0 acknowledged operations lost, 0 acknowledged deletes resurrected, atomic
fan-out, every store opens and `store.check()` is clean.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import model_crash_soak  # noqa: E402

DEFAULT_TOOLS = Path("/work/shared/tools/lazyfs")


class LazySoak(model_crash_soak.Soak):
    def __init__(self, workdir: Path, seed: int, tools: Path) -> None:
        super().__init__(workdir, seed)
        self.tools = tools
        self.backing = workdir / "backing"
        self.backing.mkdir()
        self.mount = workdir / "mnt"
        self.mount.mkdir()
        self.fifo = workdir / "faults.fifo"
        self.done_fifo = workdir / "faults-done.fifo"
        os.mkfifo(self.fifo)
        os.mkfifo(self.done_fifo)
        self.config = workdir / "lazyfs.toml"
        template = (tools / "config.toml.template").read_text()
        self.config.write_text(
            template.format(
                fifo=self.fifo,
                fifo_completed=self.done_fifo,
                logfile=workdir / "lazyfs.log",
                cache_size="1GB",
            )
        )
        self.data = self.mount / "data"  # the child's store, on LazyFS
        self.cuts = 0

    def _mount(self) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [
                str(self.tools / "lazyfs"), str(self.mount), "--config-path", str(self.config),
                "-o", "allow_other", "-o", "modules=subdir", "-o", f"subdir={self.backing}", "-f",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=lambda: __import__("resource").setrlimit(
                __import__("resource").RLIMIT_CORE, (0, 0)
            ),
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while not os.path.ismount(self.mount):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"lazyfs did not mount (exit {proc.poll()})")
            time.sleep(0.01)
        return proc

    def _unmount(self, proc: subprocess.Popen[bytes]) -> None:
        subprocess.run(["fusermount3", "-u", str(self.mount)], check=True)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def _clear_cache(self) -> None:
        done = os.open(self.done_fifo, os.O_RDONLY | os.O_NONBLOCK)
        try:
            with open(self.fifo, "w") as fifo:
                fifo.write("lazyfs::clear-cache\n")
            deadline = time.monotonic() + 60
            got = b""
            while b"finished" not in got:
                if time.monotonic() > deadline:
                    raise SystemExit("lazyfs: clear-cache did not finish")
                with contextlib.suppress(BlockingIOError):
                    got += os.read(done, 4096)
                time.sleep(0.005)
        finally:
            os.close(done)

    def run_round(self, round_no: int) -> None:
        lazyfs = self._mount()
        ack = self.workdir / f"ack-{round_no}"
        err = self.workdir / "stderr"
        try:
            with open(err, "wb") as err_file:
                proc = subprocess.Popen(
                    [sys.executable, str(self.script), str(self.data), str(ack),
                     str(self.rng.getrandbits(32)), str(round_no)],
                    stdout=subprocess.DEVNULL,
                    stderr=err_file,
                )  # fmt: skip
            try:
                if self.rng.random() < 0.1:
                    time.sleep(self.rng.uniform(0.0, 0.5))  # during open and recovery
                else:
                    deadline = time.monotonic() + 120
                    while not (ack.exists() and ack.read_bytes().startswith(b"ready")):
                        if proc.poll() is not None or time.monotonic() > deadline:
                            raise AssertionError(
                                f"child not ready {self.where(round_no)}: {err.read_text()[-3000:]}"
                            )
                        time.sleep(0.005)
                    time.sleep(self.rng.uniform(0.0, 0.5))
                proc.send_signal(signal.SIGSTOP)  # nothing fsyncs after the cut
                # A canary written and never synced: the cut must drop it.
                (self.mount / "canary").write_bytes(b"unsynced" * 512)
                self._clear_cache()
                self.cuts += 1
            finally:
                proc.kill()
                proc.wait()
        finally:
            self._unmount(lazyfs)
        canary = self.backing / "canary"
        if canary.exists() and canary.stat().st_size:
            raise SystemExit("lazyfs kept unsynced data: the power cut did not happen")
        canary.unlink(missing_ok=True)
        self.kills += 1
        self.absorb(ack)
        # Check what the backing directory kept (what the disk held after the cut).
        self.verify(round_no, source=self.backing / "data")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--data", default=None)
    parser.add_argument("--tools", default=str(DEFAULT_TOOLS))
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    workdir = Path(tempfile.mkdtemp(prefix="lazyfs_soak-", dir=args.data))
    soak = LazySoak(workdir, seed, Path(args.tools))
    return model_crash_soak.drive(
        soak, args.rounds, 10, "power cuts", lambda: soak.cuts, workdir, args.keep
    )


if __name__ == "__main__":
    sys.exit(main())
