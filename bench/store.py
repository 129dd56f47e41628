"""Store benchmark: ops/s of submit and of each transition, per fsync mode, next to the floor.

The floor is the bare file-system calls the operation needs, timed in a plain loop in the
same run on the same disk; the ratio to it is what to compare across machines:

    (a) rename            os.rename between two folders (a claim is exactly this)
    (b) write+rename      os.open/os.write/os.close a new file, os.rename it into a folder
    (c) synced            (b) plus fsync of the file and of the folder, per operation
    (d) grouped           (c) for groups of 100: write 100 files, one flush (syncfs), rename
                          all 100, fsync the folder once
    (e) unlink            os.unlink (a cancel removes the job file and its attachments)

The store is driven as the daemon drives it: one op per ``apply()`` for fsync=never and
always, groups of 100 ops per ``apply()`` for batch. Job files (~250 bytes) are encoded
beforehand, so the figures are the store's own cost. Goals are printed, not asserted.

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
from collections.abc import Callable, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from ckptd import jobs  # noqa: E402
from ckptd.durable import FsyncMode, open_dir, sync_filesystem  # noqa: E402
from ckptd.ids import new_id  # noqa: E402
from ckptd.states import State  # noqa: E402
from ckptd.store.base import Delete, Move, Op, PutNew  # noqa: E402
from ckptd.store.local import LocalStore  # noqa: E402

QUEUE = "bench"
GROUP = 100
OPS = ["submit", "claim", "finish", "release", "retry", "cancel"]
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


# -- the floor -----------------------------------------------------------------------------


def _folders(root: str, *names: str) -> list[str]:
    paths = [os.path.join(root, name) for name in names]
    for path in paths:
        os.makedirs(path)
    return paths


def _write(path: str, data: bytes) -> None:
    fd = os.open(path, _NEW, 0o640)
    os.write(fd, data)
    os.close(fd)


def _timed(loop: Callable[[], None], n: int) -> float:
    os.sync()  # start from a clean page cache: earlier phases' writeback is not ours
    started = time.perf_counter()
    loop()
    return n / (time.perf_counter() - started)


def floor_rename(root: str, n: int, data: bytes) -> float:
    src, dst = _folders(root, "a", "b")
    names = [f"{i:08d}.json" for i in range(n)]
    for name in names:
        _write(f"{src}/{name}", data)

    def loop() -> None:
        for name in names:
            os.rename(f"{src}/{name}", f"{dst}/{name}")

    return _timed(loop, n)


def floor_write_rename(root: str, n: int, data: bytes) -> float:
    tmp, dst = _folders(root, "tmp", "dst")
    names = [f"{i:08d}.json" for i in range(n)]

    def loop() -> None:
        for name in names:
            fd = os.open(f"{tmp}/{name}", _NEW, 0o640)
            os.write(fd, data)
            os.close(fd)
            os.rename(f"{tmp}/{name}", f"{dst}/{name}")

    return _timed(loop, n)


def floor_synced(root: str, n: int, data: bytes) -> float:
    tmp, dst = _folders(root, "tmp", "dst")
    names = [f"{i:08d}.json" for i in range(n)]
    dst_fd = open_dir(dst)

    def loop() -> None:
        for name in names:
            fd = os.open(f"{tmp}/{name}", _NEW, 0o640)
            os.write(fd, data)
            os.fsync(fd)
            os.close(fd)
            os.rename(f"{tmp}/{name}", f"{dst}/{name}")
            os.fsync(dst_fd)

    try:
        return _timed(loop, n)
    finally:
        os.close(dst_fd)


def floor_grouped(root: str, n: int, data: bytes, group: int = GROUP) -> float:
    tmp, dst = _folders(root, "tmp", "dst")
    names = [f"{i:08d}.json" for i in range(n)]
    dst_fd = open_dir(dst)

    def loop() -> None:
        for start in range(0, n, group):
            chunk = names[start:start + group]
            for name in chunk:
                fd = os.open(f"{tmp}/{name}", _NEW, 0o640)
                os.write(fd, data)
                os.close(fd)
            sync_filesystem(dst_fd)
            for name in chunk:
                os.rename(f"{tmp}/{name}", f"{dst}/{name}")
            os.fsync(dst_fd)

    try:
        return _timed(loop, n)
    finally:
        os.close(dst_fd)


def floor_unlink(root: str, n: int, data: bytes) -> float:
    (folder,) = _folders(root, "a")
    names = [f"{folder}/{i:08d}.json" for i in range(n)]
    for name in names:
        _write(name, data)

    def loop() -> None:
        for name in names:
            os.unlink(name)

    return _timed(loop, n)


def measure_floors(root: str, n: int, n_always: int) -> dict[str, float]:
    data = job_files(1)[0][1]
    return {
        "rename": floor_rename(f"{root}/rename", n, data),
        "write+rename": floor_write_rename(f"{root}/write", n, data),
        "synced": floor_synced(f"{root}/synced", n_always, data),
        "grouped": floor_grouped(f"{root}/grouped", n, data),
        "unlink": floor_unlink(f"{root}/unlink", n, data),
    }


# -- the store -----------------------------------------------------------------------------


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


def measure_store(root: str, mode: str, n: int) -> dict[str, float]:
    """ops/s of each operation on a LocalStore in ``mode`` (groups of 100 in batch mode)."""
    store = LocalStore(root, FsyncMode(mode))
    setup = LocalStore(root, FsyncMode.NEVER)  # untimed moves between the timed phases
    group = GROUP if mode == "batch" else 1
    files = job_files(n)
    ids = [job_id for job_id, _, _ in files]
    store.ensure_queue(QUEUE)

    def timed(ops: Sequence[Op]) -> float:
        def loop() -> None:
            for start in range(0, n, group):
                outcomes = store.apply(ops[start:start + group])
                if any(o is not None for o in outcomes):
                    raise SystemExit(f"store error: {next(o for o in outcomes if o)}")

        return _timed(loop, n)

    def untimed(ops: Sequence[Op]) -> None:
        for start in range(0, n, 1000):
            assert not any(setup.apply(ops[start:start + 1000]))

    rates = {}
    rates["submit"] = timed([PutNew(QUEUE, i, data, check_other_states=False)
                             for i, data, _ in files])
    rates["claim"] = timed([Move(QUEUE, i, P, C) for i in ids])
    rates["release"] = timed([Move(QUEUE, i, C, P, new) for i, _, new in files])
    untimed([Move(QUEUE, i, P, C) for i in ids])
    rates["finish"] = timed([Move(QUEUE, i, C, D, new) for i, _, new in files])
    untimed([Move(QUEUE, i, D, F) for i in ids])
    rates["retry"] = timed([Move(QUEUE, i, F, P, new) for i, _, new in files])
    rates["cancel"] = timed([Delete(QUEUE, P, i) for i in ids])
    store.close()
    setup.close()
    return rates


# -- running and reporting -----------------------------------------------------------------


def fs_type(path: str) -> str:
    """The type of the file system holding ``path`` (from /proc/mounts), or "?"."""
    path = os.path.realpath(path)
    best, kind = "", "?"
    try:
        with open("/proc/mounts") as mounts:
            for line in mounts:
                fields = line.split()
                point = fields[1].replace("\\040", " ")
                if (path == point or path.startswith(point.rstrip("/") + "/")) and \
                        len(point) > len(best):
                    best, kind = point, fields[2]
    except OSError:
        pass
    return kind


def one_run(root: str, n: int, n_always: int, modes: list[str]) -> dict[str, object]:
    floors = measure_floors(f"{root}/floor", n, n_always)
    stores = {mode: measure_store(f"{root}/{mode}", mode, n_always if mode == "always" else n)
              for mode in modes}
    return {"floor": floors, "store": stores}


def medians(runs: list[dict[str, dict[str, object]]]) -> dict[str, object]:
    floors = {k: statistics.median(r["floor"][k] for r in runs) for k in FLOORS}  # type: ignore
    stores = {mode: {op: statistics.median(r["store"][mode][op] for r in runs)  # type: ignore
                     for op in OPS}
              for mode in runs[0]["store"]}
    return {"floor": floors, "store": stores}


def goals(result: dict[str, object]) -> list[dict[str, object]]:
    floor: dict[str, float] = result["floor"]  # type: ignore[assignment]
    store: dict[str, dict[str, float]] = result["store"]  # type: ignore[assignment]
    found: list[dict[str, object]] = []

    def goal(text: str, value: float, target: float) -> None:
        found.append({"goal": text, "value": round(value, 3), "target": target,
                      "pass": value >= target})

    if "never" in store:
        goal("fsync=never claim >= 50% of the bare-rename floor",
             store["never"]["claim"] / floor["rename"], 0.5)
        goal("fsync=never submit >= 50% of the write+rename floor",
             store["never"]["submit"] / floor["write+rename"], 0.5)
    if "batch" in store and "always" in store:
        for op in OPS:
            goal(f"fsync=batch {op} >= 3x fsync=always",
                 store["batch"][op] / store["always"][op], 3.0)
    if "batch" in store:
        for op in OPS:
            goal(f"fsync=batch {op} >= 50% of the grouped floor",
                 store["batch"][op] / floor["grouped"], 0.5)
    return found


def report(result: dict[str, object], info: dict[str, object]) -> None:
    floor: dict[str, float] = result["floor"]  # type: ignore[assignment]
    store: dict[str, dict[str, float]] = result["store"]  # type: ignore[assignment]
    print(f"ckptd store benchmark: median of {info['runs']} run(s); {info['n']} ops "
          f"({info['n_always']} with fsync=always); root {info['root']} ({info['fs']})")
    print()
    print("floor (bare system calls, ops/s):")
    for name in FLOORS:
        print(f"  {name:<14} {floor[name]:>10,.0f}")
    print()
    modes = list(store)
    header = "op        " + "".join(f"{m:>12} {'x floor':>8}" for m in modes)
    if "batch" in store and "always" in store:
        header += f"{'batch/always':>14}"
    print(header)
    for op in OPS:
        line = f"{op:<10}"
        for mode in modes:
            rate = store[mode][op]
            line += f"{rate:>12,.0f} {rate / floor[relevant_floor(mode, op)]:>8.2f}"
        if "batch" in store and "always" in store:
            line += f"{store['batch'][op] / store['always'][op]:>13.1f}x"
        print(line)
    print("  x floor: never vs rename (claim), unlink (cancel), write+rename (the rest); "
          "batch vs grouped; always vs synced")
    print()
    for item in goals(result):
        mark = "PASS" if item["pass"] else "MISS"
        print(f"{mark}  {item['goal']}: {item['value']:.2f} (goal {item['target']:g})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
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
    parser.add_argument("--keep", action="store_true", help="keep the files written")
    args = parser.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    unknown = set(modes) - set(MODES)
    if unknown or args.n < 1 or args.n_always < 1 or args.runs < 1:
        parser.error(f"bad arguments: modes must be among {MODES}; counts at least 1")
    base = args.root or os.getcwd()
    os.makedirs(base, exist_ok=True)
    root = tempfile.mkdtemp(prefix=".bench-store-", dir=base)
    kind = fs_type(root)
    if kind in ("tmpfs", "ramfs") and not args.json:
        print(f"warning: {root} is on {kind}: fsync costs nothing there, the figures will "
              "not say much about a disk", file=sys.stderr)
    try:
        runs = []
        for run in range(args.runs):
            runs.append(one_run(f"{root}/run{run}", args.n, args.n_always, modes))
            if not args.keep:
                shutil.rmtree(f"{root}/run{run}", ignore_errors=True)
        result = medians(runs)  # type: ignore[arg-type]
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    info = {"runs": args.runs, "n": args.n, "n_always": args.n_always, "root": root,
            "fs": kind}
    if args.json:
        print(json.dumps({**info, **result, "goals": goals(result), "runs_raw": runs},
                         indent=2))
    else:
        report(result, info)
    return 0  # goals are reported, not enforced: machines differ


if __name__ == "__main__":
    sys.exit(main())
