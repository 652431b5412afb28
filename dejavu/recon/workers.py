"""The worker processes of ``dejavu prepare recon`` on one machine: :func:`prepare_parallel`.

This process and P - 1 spawned ones each run ``dejavu.recon.dataprep.run_worker`` and take the units
of the machine's share next-free from shared counters (:class:`UnitClaims`). Why this shape:

- the spawned workers start first, before this process imports torch (this module and the CLI do not):
  their start-up (a Python, torch and the stage's modules: ~2 s of CPU each) overlaps this process's
  own, and this process is worker 0, so P processes pay P start-ups side by side, not one after another;
- units are claimed next-free, not dealt round-robin: a worker that starts later or draws slower units
  (people with more photos, a video) takes fewer, and no core idles while another finishes a fixed share;
- spawn, not fork: torch and numba thread pools do not survive a fork;
- one failure stops all: the others take no new unit, spawned ones are terminated (shard writes are
  atomic), and the error comes out here as one line (a DejavuError in a worker) or with the worker's
  traceback (a bug). Ctrl-C reaches this process only, which then terminates the others.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import signal
import threading
import time
import traceback
from contextlib import contextmanager
from multiprocessing.connection import wait
from pathlib import Path
from collections.abc import Iterator
from typing import Any

from dejavu.errors import DejavuError
from dejavu.recon.config import ReconConfig

SOURCES = ("synthetic", "real")
#: What :meth:`UnitClaims.claim` returns once the workers are stopped: past the end of any unit list.
STOPPED = 1 << 62
#: The function every worker process runs (imported by name, so this module stays free of torch).
WORKER = "dejavu.recon.dataprep:run_worker"


def _context():
    return multiprocessing.get_context("spawn")


class UnitClaims:
    """Next-free hand-out of the units of named lists (one per data source) to the processes of one
    machine. Every worker walks the same list (the machine's share, finished units included), so an
    index names the same unit in every process. Picklable into spawned processes (shared counters)."""

    def __init__(self, lists: tuple[str, ...]):
        self._next = {name: _context().Value("q", 0) for name in lists}

    def claim(self, name: str) -> int:
        """Index of the next unclaimed unit of list ``name`` (>= its length: none left; :data:`STOPPED`
        after :meth:`stop`)."""
        counter = self._next[name]
        with counter.get_lock():
            index = counter.value
            counter.value = min(index + 1, STOPPED)
        return index

    def stop(self) -> None:
        """Hand out no more units (after a failure)."""
        for counter in self._next.values():
            with counter.get_lock():
                counter.value = STOPPED


def worker_threads(cfg: ReconConfig, processes: int) -> int:
    """torch / numba threads of each of ``processes`` workers: ``cfg.cpu_threads``, or for 0 (library
    defaults) an equal share of this machine's cores. Threads beyond a worker's share of the cores only
    contend: on 2 cores, 2 processes take 1 thread each."""
    return cfg.cpu_threads if cfg.cpu_threads > 0 else max(1, (os.cpu_count() or 1) // processes)


def prepare_parallel(cfg: ReconConfig, sources: tuple[str, ...] = SOURCES, processes: int = 1, node: int = 0,
                     nodes: int = 1, progress: bool = True, device: str = "cpu") -> list:
    """This machine's share (``node`` of ``nodes``, ``dejavu.recon.shards.units_for``) of the data, in
    ``processes`` worker processes with :func:`worker_threads` threads each.

    ``device`` "cuda": process p renders the synthetic identities on GPU p mod (GPUs on this machine);
    tracking stays on the CPU. Returns each process's ``dejavu.recon.dataprep.WorkerReport`` per source.
    """
    if processes < 1 or nodes < 1 or not 0 <= node < nodes:
        raise DejavuError(f"--processes {processes} --node {node} --nodes {nodes}: expected processes >= 1 "
                          "and 0 <= node < nodes")
    launched = time.time()
    sources = tuple(sources)
    claims = UnitClaims(sources)
    calls = [(cfg.to_dict(), sources, node, nodes, p, claims, device, worker_threads(cfg, processes), launched)
             for p in range(processes)]
    with _progress(cfg, sources, progress):
        per_process = run_workers(WORKER, calls, claims)
    return [r for reports in per_process for r in reports]


def run_workers(function: str, calls: list[tuple], claims: UnitClaims) -> list[Any]:
    """``[f(*calls[0]), f(*calls[1]), ...]`` for the function ``f`` named ``function``
    ("package.module:name"): calls[1:] in spawned processes, started first, then calls[0] in this one.
    On the first failure (see the module notes) ``claims`` is stopped, so the others take no new unit,
    and the failure is raised here."""
    children = [_start(function, args, claims) for args in calls[1:]]
    threading.Thread(target=_watch, args=([proc for proc, _ in children], claims), daemon=True).start()
    try:
        first = _function(function)(*calls[0])
        return [first, *_collect(children)]
    except BaseException:
        claims.stop()
        raise
    finally:
        for proc, _ in children:
            if proc.is_alive():  # after a failure only: a finished worker has sent its result and exits
                proc.terminate()
            proc.join()


def _function(name: str):
    module, _, attr = name.partition(":")
    return getattr(importlib.import_module(module), attr)


def _start(function: str, args: tuple, claims: UnitClaims) -> tuple:
    """Spawn a process running the function named ``function`` on ``args``; (process, end of its result pipe)."""
    ctx = _context()
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(function, args, claims, send), daemon=True)
    proc.start()
    send.close()  # the child's end: closed here so a child that dies shows as end-of-file
    return proc, receive


def _child(function: str, args: tuple, claims: UnitClaims, conn) -> None:
    """A spawned worker: the function named ``function`` on ``args``, its result or failure sent to the
    parent; a failure first stops ``claims`` (the parent, busy with its own units, stops after the current one)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the parent stops everyone, once
    try:
        conn.send(("ok", _function(function)(*args)))
    except DejavuError as exc:
        claims.stop()
        conn.send(("error", str(exc)))
    except BaseException:  # noqa: BLE001 - anything else is a bug: its traceback goes to the parent
        claims.stop()
        conn.send(("bug", traceback.format_exc()))
    finally:
        conn.close()


def _watch(procs: list, claims: UnitClaims) -> None:
    """Stop ``claims`` when a process ends killed (a failing worker stops them itself): this process,
    busy with its own units, then stops after the current one instead of doing the dead one's share."""
    while procs:
        wait([proc.sentinel for proc in procs])
        for proc in [proc for proc in procs if proc.exitcode is not None]:
            procs.remove(proc)
            if proc.exitcode != 0:
                claims.stop()


def _collect(children: list[tuple]) -> list[Any]:
    """The spawned workers' results in order; raises on the first failure or death."""
    results: dict[int, Any] = {}
    while len(results) < len(children):
        pending = [i for i in range(len(children)) if i not in results]
        wait([children[i][1] for i in pending] + [children[i][0].sentinel for i in pending])
        for i in pending:
            proc, conn = children[i]
            if not conn.poll():
                continue
            try:
                status, payload = conn.recv()
            except EOFError:
                proc.join()
                raise DejavuError(f"data worker process {i + 1} ended without a result (exit code "
                                  f"{proc.exitcode}: killed, e.g. out of memory?)") from None
            if status == "error":
                raise DejavuError(payload)
            if status == "bug":
                raise RuntimeError(f"data worker process {i + 1} failed:\n{payload}")
            results[i] = payload
    return [results[i] for i in range(len(children))]


def _shard_count(cfg: ReconConfig, sources: tuple[str, ...]) -> int:
    folders = [cfg.data.synthetic_dir] * ("synthetic" in sources) + [cfg.data.real_cache] * ("real" in sources)
    return sum(len(list(Path(f).expanduser().glob("shard_*.safetensors"))) for f in folders)


@contextmanager
def _progress(cfg: ReconConfig, sources: tuple[str, ...], enabled: bool) -> Iterator[None]:
    """A bar of the shards in the output folders (every worker's, other machines' on a shared folder
    included), counted once a second on a thread while this process works."""
    if not enabled:
        yield
        return
    from tqdm import tqdm

    start = _shard_count(cfg, sources)
    bar = tqdm(desc="data shards written", unit="shard")
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(1.0):
            bar.n = _shard_count(cfg, sources) - start
            bar.refresh()

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        bar.n = _shard_count(cfg, sources) - start
        bar.close()
