"""Store benchmark: ops/s of submit and of each transition, per fsync mode, next to the floor.

The floor is the bare file-system calls an operation needs, in a plain loop on the same disk:

    (a) rename            os.rename between two folders (a claim is exactly this)
    (b) write+rename      os.open/os.write/os.close a new file, os.rename it into a folder
    (c) synced            (b) plus fsync of the file and of the folder, per operation
    (d) grouped           (c) for groups of 100: write 100 files, one flush (syncfs), rename
                          all 100, fsync the folder once
    (e) unlink            os.unlink (a cancel removes the job file and its attachments)

Each operation is timed in chunks (1000 ops; 100 with fsync=always) that alternate with
chunks of its floor, so both see the same disk: on a shared machine, or after a big delete on
a file system mounted with ``discard``, the speed of file creation can drift tenfold within
seconds, and a floor timed a minute earlier says little. Figures are medians over the chunks
(the JSON also has each phase's total throughput). The ratio to the floor is what to compare
across machines. The store is driven as the daemon drives it: one op per ``apply()`` for
fsync=never and always, groups of 100 ops per ``apply()`` for batch. Job files (~250 bytes)
are encoded beforehand, so the figures are the store's own cost. Goals are printed, not
asserted.

    python bench/store.py                       # 20,000 ops (2,000 with fsync=always), 3 runs
    python bench/store.py --n 5000 --runs 1 --json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from bench.common import filesystem_of  # noqa: E402
from ckptd.core import jobs  # noqa: E402
from ckptd.core.config import FsyncMode  # noqa: E402
from ckptd.core.ids import new_id  # noqa: E402
from ckptd.core.states import State  # noqa: E402
from ckptd.store.base import Delete, Move, Op, PutNew  # noqa: E402
from ckptd.store.local.backend import LocalStore  # noqa: E402
from ckptd.store.local.durable import open_dir, sync_filesystem  # noqa: E402

QUEUE = "bench"
GROUP = 100
OPS = ["submit", "claim", "finish", "release", "retry", "cancel"]
REWRITING = ("finish", "release", "retry")  # moves that write the job anew, then unlink it
MODES = ["never", "batch", "always"]
FLOORS = ["rename", "write+rename", "synced", "grouped", "unlink"]
P, C, D, F = State.PENDING, State.CLAIMED, State.DONE, State.FAILED
_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL


def relevant_floor(mode: str, op: str) -> str:
    """The floor an operation is compared with."""
    if mode == "batch":
        return "grouped"
    if mode == "always":
        return "synced"
    return {"claim": "rename", "cancel": "unlink"}.get(op, "write+rename")


def job_files(n: int) -> list[tuple[str, bytes, bytes]]:
    """n (id, job file, rewritten job file) with generated ids, ~250 bytes each."""
    made = []
    now = time.time()
    for _ in range(n):
        job_id = new_id()
        job = jobs.new_job(QUEUE, job_id, {"sku": "A-1", "qty": 3, "note": "x" * 40}, now,
                           max_attempts=3)
        first = jobs.encode(job)
        job["attempts"] = 1
        job["result"] = {"price": 12.5}
        made.append((job_id, first, jobs.encode(jobs.bump(job))))
    return made


# -- the floor -----------------------------------------------------------------------------


class Floor:
    """One bare loop of system calls, run a chunk at a time (to alternate with the store)."""

    def __init__(self, root: str, kind: str, capacity: int, data: bytes) -> None:
        self.kind = kind
        self.data = data
        self.src = os.path.join(root, kind.replace("+", "-"), "src")
        self.dst = os.path.join(root, kind.replace("+", "-"), "dst")
        os.makedirs(self.src)
        os.makedirs(self.dst)
        self.old = os.path.join(root, kind.replace("+", "-"), "old")
        self.next = self.removed = self.made_old = 0
        self.dst_fd = open_dir(self.dst)
        if kind in ("rename", "unlink"):  # these need files to act on, made untimed
            for i in range(capacity):
                self._write(f"{self.src}/{i:08d}.json")

    def _write(self, path: str) -> None:
        fd = os.open(path, _NEW, 0o640)
        os.write(fd, self.data)
        os.close(fd)

    def run(self, count: int) -> float:
        """Do the next ``count`` operations; return the seconds they took."""
        names = [f"{i:08d}.json" for i in range(self.next, self.next + count)]
        self.next += count
        src, dst, data, dst_fd = self.src, self.dst, self.data, self.dst_fd
        started = time.perf_counter()
        if self.kind == "rename":
            for name in names:
                os.rename(f"{src}/{name}", f"{dst}/{name}")
        elif self.kind == "unlink":
            for name in names:
                os.unlink(f"{src}/{name}")
        elif self.kind == "write+rename":
            for name in names:
                fd = os.open(f"{src}/{name}", _NEW, 0o640)
                os.write(fd, data)
                os.close(fd)
                os.rename(f"{src}/{name}", f"{dst}/{name}")
        elif self.kind == "synced":
            for name in names:
                fd = os.open(f"{src}/{name}", _NEW, 0o640)
                os.write(fd, data)
                os.fsync(fd)
                os.close(fd)
                os.rename(f"{src}/{name}", f"{dst}/{name}")
                os.fsync(dst_fd)
        elif self.kind == "grouped":
            for start in range(0, count, GROUP):
                chunk = names[start:start + GROUP]
                for name in chunk:
                    fd = os.open(f"{src}/{name}", _NEW, 0o640)
                    os.write(fd, data)
                    os.close(fd)
                sync_filesystem(dst_fd)
                for name in chunk:
                    os.rename(f"{src}/{name}", f"{dst}/{name}")
                os.fsync(dst_fd)
        else:
            raise ValueError(self.kind)
        return time.perf_counter() - started

    def prepare_old(self, count: int) -> None:
        """Make ``count`` more files for :meth:`run_unlink` (untimed; synced by the caller).

        They stand for the old copies a rewriting move removes: files written long enough
        ago to have their blocks allocated, which makes removing them cost what it costs
        the store (a file still in the page cache has no blocks to free yet).
        """
        os.makedirs(self.old, exist_ok=True)
        for i in range(self.made_old, self.made_old + count):
            self._write(f"{self.old}/{i:08d}.json")
        self.made_old += count

    def run_unlink(self, count: int) -> float:
        """Remove the next ``count`` files made by :meth:`prepare_old`; return the seconds."""
        names = [f"{self.old}/{i:08d}.json" for i in range(self.removed, self.removed + count)]
        self.removed += count
        started = time.perf_counter()
        for name in names:
            os.unlink(name)
        return time.perf_counter() - started

    def close(self) -> None:
        os.close(self.dst_fd)


# -- the store, chunk by chunk against its floor -------------------------------------------


def measure_mode(root: str, mode: str, n: int, chunk: int, verbose: bool = False
                 ) -> dict[str, dict[str, float]]:
    """For each operation: the store's ops/s and its floor's ops/s, timed in alternation."""
    store = LocalStore(f"{root}/store", FsyncMode(mode))
    setup = LocalStore(f"{root}/store", FsyncMode.NEVER)  # untimed moves between phases
    group = GROUP if mode == "batch" else 1
    files = job_files(n)
    ids = [job_id for job_id, _, _ in files]
    data = files[0][1]
    kinds = {relevant_floor(mode, op) for op in OPS}
    # The floors work in folders beside the queue's own, so that the file system places their
    # files near the store's (ext4 spreads unrelated folders over its block groups).
    floors = {kind: Floor(f"{root}/store/{QUEUE}/floor", kind, n, data) for kind in kinds}
    store.ensure_queue(QUEUE)
    result: dict[str, dict[str, float]] = {}

    def run_store(part: Sequence[Op]) -> float:
        began = time.perf_counter()
        for first in range(0, len(part), group):
            outcomes = store.apply(part[first:first + group])
            if any(o is not None for o in outcomes):
                raise SystemExit(f"store error: {next(o for o in outcomes if o)}")
        return time.perf_counter() - began

    def phase(op: str, ops: Sequence[Op]) -> None:
        floor = floors[relevant_floor(mode, op)]
        if op in REWRITING:
            floor.prepare_old(n)
        os.sync()  # start from a clean page cache: earlier phases' writeback is not ours
        pairs = []
        for number, start in enumerate(range(0, n, chunk)):
            part = ops[start:start + chunk]
            if number % 2:  # alternate which goes first, so neither always follows the other
                floor_time = floor.run(len(part))
                store_time = run_store(part)
            else:
                store_time = run_store(part)
                floor_time = floor.run(len(part))
            # A rewriting move also removes the old copy: time that too, for reference.
            unlink_time = floor.run_unlink(len(part)) if op in REWRITING else 0.0
            pairs.append((len(part), store_time, floor_time, unlink_time))
        # Medians over the chunks: a burst of slow disk (another process's flush) moves a
        # median little, where it would dominate a total.
        if verbose:
            print(f"{mode:<6} {op:<8} store/floor ops/s per chunk: " + "  ".join(
                f"{k / st:.0f}/{k / ft:.0f}" for k, st, ft, _ in pairs), file=sys.stderr)
        result[op] = {"rate": statistics.median(k / st for k, st, _, _ in pairs),
                      "floor": statistics.median(k / ft for k, _, ft, _ in pairs),
                      "ratio": statistics.median(ft / st for _, st, ft, _ in pairs),
                      "ratio_with_unlink": statistics.median((ft + ut) / st
                                                             for _, st, ft, ut in pairs),
                      "total": n / sum(st for _, st, _, _ in pairs)}

    def untimed(ops: Sequence[Op]) -> None:
        for start in range(0, n, 1000):
            assert not any(setup.apply(ops[start:start + 1000]))

    phase("submit", [PutNew(QUEUE, i, data, check_other_states=False) for i, data, _ in files])
    phase("claim", [Move(QUEUE, i, P, C) for i in ids])
    phase("release", [Move(QUEUE, i, C, P, new) for i, _, new in files])
    untimed([Move(QUEUE, i, P, C) for i in ids])
    phase("finish", [Move(QUEUE, i, C, D, new) for i, _, new in files])
    untimed([Move(QUEUE, i, D, F) for i in ids])
    phase("retry", [Move(QUEUE, i, F, P, new) for i, _, new in files])
    phase("cancel", [Delete(QUEUE, P, i) for i in ids])
    for floor in floors.values():
        floor.close()
    store.close()
    setup.close()
    return result


# -- running and reporting -----------------------------------------------------------------


def one_run(root: str, n: int, n_always: int, modes: list[str], verbose: bool = False
            ) -> dict[str, Any]:
    """Every mode once: {mode: {op: {"rate": ops/s, "floor": ops/s}}}."""
    measured = {}
    for mode in modes:
        count = n_always if mode == "always" else n
        chunk = 100 if mode == "always" else 1000
        measured[mode] = measure_mode(f"{root}/{mode}", mode, count, min(chunk, count),
                                      verbose)
        shutil.rmtree(f"{root}/{mode}", ignore_errors=True)
    return measured


def medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {mode: {op: {key: statistics.median(run[mode][op][key] for run in runs)
                        for key in ("rate", "floor", "ratio", "ratio_with_unlink", "total")}
                   for op in OPS}
            for mode in runs[0]}


def floors_of(result: dict[str, Any]) -> dict[str, float]:
    """The median floor of each kind, over the operations it was paired with."""
    found: dict[str, list[float]] = {}
    for mode, ops in result.items():
        for op, figures in ops.items():
            found.setdefault(relevant_floor(mode, op), []).append(figures["floor"])
    return {kind: statistics.median(values) for kind, values in found.items()}


def goals(result: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    def goal(text: str, value: float, target: float) -> None:
        found.append({"goal": text, "value": round(value, 3), "target": target,
                      "pass": value >= target})

    def ratio(mode: str, op: str) -> float:
        return float(result[mode][op]["ratio"])

    if "never" in result:
        goal("fsync=never claim >= 50% of the bare-rename floor", ratio("never", "claim"), 0.5)
        goal("fsync=never submit >= 50% of the write+rename floor",
             ratio("never", "submit"), 0.5)
    if "batch" in result and "always" in result:
        for op in OPS:
            goal(f"fsync=batch {op} >= 3x fsync=always",
                 result["batch"][op]["rate"] / result["always"][op]["rate"], 3.0)
    if "batch" in result:
        for op in OPS:
            goal(f"fsync=batch {op} >= 50% of the grouped floor", ratio("batch", op), 0.5)
    return found


def report(result: dict[str, Any], info: dict[str, Any]) -> None:
    print(f"ckptd store benchmark: median of {info['runs']} run(s); {info['n']} ops per "
          f"phase ({info['n_always']} with fsync=always); {info['root']} ({info['fs']})")
    print()
    floors = floors_of(result)
    print("floor (bare system calls, ops/s, median over the phases it was paired with):")
    for name in FLOORS:
        if name in floors:
            print(f"  {name:<14} {floors[name]:>10,.0f}")
    if "grouped" in floors and "synced" in floors:
        print(f"  grouped/synced = {floors['grouped'] / floors['synced']:.1f}x: the most "
              "grouping syncs can gain on this disk")
    print()
    modes = list(result)
    header = f"{'op':<9}" + "".join(f"{m:>11} {'x floor':>8}" for m in modes)
    both = "batch" in result and "always" in result
    print(header + (f"{'batch/always':>14}" if both else ""))
    for op in OPS:
        line = f"{op:<9}"
        for mode in modes:
            figures = result[mode][op]
            line += f"{figures['rate']:>11,.0f} {figures['ratio']:>8.2f}"
        if both:
            line += f"{result['batch'][op]['rate'] / result['always'][op]['rate']:>13.1f}x"
        print(line)
    print("  ops/s and x floor are medians over chunks of 1000 ops (100 for always), each "
          "timed next to\n  a chunk of its floor: never vs rename (claim), unlink (cancel), "
          "write+rename (the rest);\n  batch vs grouped; always vs synced")
    print()
    print("rewriting moves against their floor plus the unlink of the old copy (x floor+unlink):")
    for op in REWRITING:
        print(f"{op:<9}" + "".join(f"{'':>11} {result[m][op]['ratio_with_unlink']:>8.2f}"
                                   for m in modes))
    print()
    for item in goals(result):
        mark = "PASS" if item["pass"] else "MISS"
        print(f"{mark}  {item['goal']}: {item['value']:.2f} (goal {item['target']:g})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20_000,
                        help="operations per phase for fsync=never and batch (default 20000)")
    parser.add_argument("--n-always", type=int, default=2_000,
                        help="operations per phase for fsync=always (default 2000)")
    parser.add_argument("--runs", type=int, default=3, help="repeat and print medians (3)")
    parser.add_argument("--modes", default=",".join(MODES),
                        help="fsync modes to run, comma-separated (default never,batch,always)")
    parser.add_argument("--root", help="folder to run in (default: a new folder under the "
                        "current one, so on its disk rather than a tmpfs /tmp)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--chunks", action="store_true",
                        help="also print each chunk's store and floor ops/s (to stderr)")
    args = parser.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    if set(modes) - set(MODES) or not modes:
        parser.error(f"--modes takes some of {', '.join(MODES)}")
    if min(args.n, args.n_always, args.runs) < 1:
        parser.error("--n, --n-always and --runs must be at least 1")
    base = args.root or os.getcwd()
    os.makedirs(base, exist_ok=True)
    root = tempfile.mkdtemp(prefix=".bench-store-", dir=base)
    kind = filesystem_of(root)
    if kind.startswith(("tmpfs", "ramfs")):
        print(f"warning: {root} is on {kind}, where fsync costs nothing: the figures will "
              "say little about a disk", file=sys.stderr)
    runs = []
    try:
        for run in range(args.runs):
            runs.append(one_run(f"{root}/run{run}", args.n, args.n_always, modes, args.chunks))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    result = medians(runs)
    info = {"runs": args.runs, "n": args.n, "n_always": args.n_always, "root": root,
            "fs": kind}
    if args.json:
        print(json.dumps({**info, "result": result, "floors": floors_of(result),
                          "goals": goals(result), "each_run": runs}, indent=2))
    else:
        report(result, info)
    return 0  # goals are reported, not enforced: machines differ


if __name__ == "__main__":
    sys.exit(main())
