"""`batch` and `index` on an existing cluster engine: Dask distributed (the optional `cluster` extra).

    cluster = Cluster.connect("tcp://scheduler:8786")   # or "local": a scheduler and 2 workers on this machine
    run = BatchRun(folder, "results.jsonl", options); run.use_cluster(cluster); run.run()
    FolderIndex(folder).update(cluster=cluster)
    cluster.close()

This module is the only one that knows Dask; the work itself is the engine's own, the same on both paths:
- the driver (the `fusiondesk` process) walks the folder and decides what is still to do (resume), as always,
  and sends the files in chunks of one encoder batch; a task is `run_chunk(spec, entries)`;
- each worker process makes the per-file work (engine.folder.BatchWork or engine.index.IndexWork) once from the
  WorkSpec: the model bundle from a path every node can read, checked against the driver's bundle version (and
  each model file's sha256 when first opened, as everywhere), ONNX Runtime with one intra-op thread, since the
  cluster gives each worker process its own core; later chunks of the same run reuse it;
- finished chunks come back as they finish, in any order; the driver alone appends rows to the results file and
  writes the index (one writer), so resuming works exactly as on one machine (path + size + mtime).

Faults. A chunk's result is sent only when the whole chunk is done, so a file's row arrives once whatever
happens to workers. When a worker process dies, the scheduler runs its chunks again elsewhere; when a chunk has
been running on more dying workers than the scheduler allows (`distributed.scheduler.allowed-failures`;
`--cluster local` sets 1: the second death), its files are run one at a time, and a file that alone still kills
its worker becomes an error row instead of being retried for ever. An unreachable cluster, or one with no
workers, is said at the start.

Dask rather than Ray: see the README ("Folder mode on a cluster") for the measurement.
"""

from __future__ import annotations

import logging
import sys
import threading
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Iterator

from .errors import FusionDeskError, InputFileError
from .pipeline import Done, FileEntry, chunked

LOCAL = "local"
LOCAL_WORKERS = 2
CONNECT_SECONDS = 10.0  # to reach the scheduler
WORKERS_SECONDS = 60.0  # for a first worker to join (local workers load Python, numpy and ONNX Runtime first)
CRASHED = "crashed a cluster worker process every time it was tried, so it was left out (a file that crashes the decoder or a model?)"
INSTALL_HINT = "--cluster needs the optional cluster extra (Dask distributed): pip install -e \".[cluster]\""
FROZEN_HINT = ("--cluster is not part of the double-click app: run FusionDesk from a Python install with the "
               "cluster extra (pip install -e \".[cluster]\"), on a path every worker can read")


@dataclass(frozen=True)
class WorkSpec:
    """What a worker process needs to make the per-file work of one run, the same as the driver's."""

    kind: str  # "batch" (engine.folder.BatchWork) | "index" (engine.index.IndexWork)
    bundle_dir: str
    bundle_version: str
    device: str
    settings: Any  # batch: engine.folder.BatchOptions; index: {"language", "batch_size"}
    head: str | None = None  # batch --head: the head file's path
    clashing: frozenset = field(default_factory=frozenset)  # batch: image names another image shares

    @classmethod
    def of(cls, kind: str, runtime, settings: Any, head: str | None = None,
           clashing: frozenset = frozenset()) -> "WorkSpec":
        return cls(kind, str(runtime.bundle.root.resolve()), runtime.bundle.bundle_version, runtime.device,
                   settings, head, clashing)

    @property
    def key(self) -> tuple:
        """What a worker keeps its work under: a rescan that only finds new name clashes reuses the models."""
        return (self.kind, self.bundle_dir, self.bundle_version, self.device, repr(self.settings), self.head)


# ------------------------------------------------------------------------------------------- on the workers

_work: dict[tuple, Any] = {}
_work_lock = threading.Lock()


def run_chunk(spec: WorkSpec, entries: list[FileEntry]) -> tuple[str, list[Done]]:
    """A worker's task: these files through the run's per-file work; (this worker's name, finished files)."""
    work = _work_for(spec)
    if spec.kind == "batch":
        work.clashing = set(spec.clashing)
    done = [item.for_driver() for batch in work.process(entries) for item in batch]
    return _worker_name(), done


def _work_for(spec: WorkSpec):
    with _work_lock:
        if spec.key not in _work:
            _work.clear()  # the models of one run at a time
            _work[spec.key] = _make_work(spec)
        return _work[spec.key]


def _make_work(spec: WorkSpec):
    from .manifest import ModelBundle
    from .runtime import Runtime

    bundle = ModelBundle(spec.bundle_dir)  # says which path is missing when this node cannot read it
    if bundle.bundle_version != spec.bundle_version:
        raise FusionDeskError(f"the model bundle at {spec.bundle_dir} on worker {_worker_name()} is version "
                              f"{bundle.bundle_version}, the driver's is {spec.bundle_version}: give every node "
                              "the same bundle")
    _malloc_as_usual()
    runtime = Runtime(bundle, device=spec.device, threads=1)
    if spec.kind == "index":
        from .index import IndexWork

        return IndexWork(runtime, spec.settings["language"], 1, spec.settings["batch_size"])
    from .folder import BatchWork

    head = None
    if spec.head is not None:
        from .teach import load_head

        head = load_head(spec.head, runtime)
    return BatchWork(replace(spec.settings, workers=1), runtime, head)  # one decoding thread: one core each


def _malloc_as_usual() -> None:
    """Undo what Dask's nanny sets for its worker processes (MALLOC_TRIM_THRESHOLD_=65536): any such variable
    also freezes glibc's mmap threshold at 128 KB, so every picture and tensor is mapped and unmapped afresh.
    Measured on the batch work: 2.7 instead of 5.1-5.8 files/s per worker, half of the CPU time in the kernel.
    These thresholds give the worker glibc's usual behaviour back (large blocks are reused, freed memory goes
    back to the system beyond 64 MB)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):  # not glibc (macOS, Windows): nothing to undo
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    mallopt(m_mmap_threshold, 32 << 20)
    mallopt(m_trim_threshold, 64 << 20)


def _worker_name() -> str:
    from distributed import get_worker

    try:
        return str(get_worker().name)
    except ValueError:  # not on a worker (a test calling run_chunk directly)
        return "here"


# --------------------------------------------------------------------------------------------- the driver


class Cluster:
    """A connection to a Dask cluster (or one started here with `local`) that runs chunks of files."""

    def __init__(self, client, address: str, local=None):
        self.client = client
        self.address = address
        self._local = local

    @classmethod
    def connect(cls, address: str, workers: int = LOCAL_WORKERS) -> "Cluster":
        try:
            import dask
            from distributed import Client, LocalCluster
        except ImportError:
            raise FusionDeskError(FROZEN_HINT if getattr(sys, "frozen", False) else INSTALL_HINT) from None
        # Every link (client -> scheduler, and with `local` the scheduler in this process -> each worker) keeps its
        # last `low-level-log-length` messages for debugging, each task's file list among them: at the default
        # 1,000 the driver's memory grew by 1.3 MB per 1,000 files (measured) until some 32,000 files were held.
        dask.config.set({"distributed.admin.low-level-log-length": 20})
        local = None
        try:
            if address == LOCAL:
                # A second death of the worker running a chunk is enough: the driver then looks for the file.
                with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
                    local = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                                         dashboard_address=None, silence_logs=logging.ERROR)
                client = Client(local, set_as_default=False)
            else:
                client = Client(address, timeout=CONNECT_SECONDS, set_as_default=False)
        except (OSError, TimeoutError, RuntimeError) as exc:  # RuntimeError: local workers that failed to start
            if local is not None:
                local.close()
            raise FusionDeskError(f"cannot reach the cluster at {address} ({exc}): is its scheduler running and "
                                  "reachable from here? (or try --cluster local)") from None
        cluster = cls(client, address, local)
        try:
            client.wait_for_workers(1, timeout=WORKERS_SECONDS)
        except (OSError, TimeoutError):
            cluster.close()
            raise FusionDeskError(f"the cluster at {address} has no workers (none joined in "
                                  f"{WORKERS_SECONDS:.0f} s): start some with `dask worker {address}`") from None
        return cluster

    def workers(self) -> list[str]:
        return sorted(str(info.get("name", address))
                      for address, info in self.client.scheduler_info()["workers"].items())

    def describe(self) -> str:
        where = "on this machine" if self._local is not None else f"at {self.address}"
        count = len(self.workers())
        return f"cluster {where}: {count} worker{'s' * (count != 1)}"

    def run(self, spec: WorkSpec, entries: Iterable[FileEntry], chunk_size: int,
            stop: threading.Event | None = None, progress=None) -> Iterator[list[Done]]:
        """Finished chunks as they come back (any order). progress (engine.folder.Progress): its per-worker
        counts are kept up to date."""
        from distributed import KilledWorker, as_completed

        chunks = chunked(entries, max(1, chunk_size))
        in_flight: dict[Any, list[FileEntry]] = {}
        finished = as_completed(loop=self.client.loop)
        # Enough queued that no worker waits between chunks, few enough that the driver holds little.
        limit = 2 * max(1, len(self.workers())) + 2

        def submit_next() -> None:
            chunk = next(chunks, None)
            if chunk is not None:
                future = self.client.submit(run_chunk, spec, chunk, pure=False)
                in_flight[future] = chunk
                finished.add(future)

        try:
            for _ in range(limit):
                submit_next()
            for future in finished:
                chunk = in_flight.pop(future)
                if stop is not None and stop.is_set():
                    break
                try:
                    worker, done = future.result()
                except KilledWorker:
                    done = list(self._one_by_one(spec, chunk, progress))
                except FusionDeskError:
                    raise
                except Exception as exc:  # the engine's own bug on a worker: stop, saying where
                    raise FusionDeskError(f"a cluster worker failed ({type(exc).__name__}: {exc})") from exc
                else:
                    _count(progress, worker, len(done))
                finally:
                    future.release()
                submit_next()
                yield done
        finally:
            if in_flight:  # stopped (Ctrl+C, an error): nothing more is run for this run
                self.client.cancel(list(in_flight))

    def _one_by_one(self, spec: WorkSpec, chunk: list[FileEntry], progress) -> Iterator[Done]:
        """The files of a chunk that kept killing its workers, one at a time: which one is it?"""
        from distributed import KilledWorker

        for entry in chunk:
            future = self.client.submit(run_chunk, spec, [entry], pure=False)
            try:
                worker, done = future.result()
                _count(progress, worker, len(done))
                yield from done
            except KilledWorker:
                yield _crashed(spec, entry)
            finally:
                future.release()

    def close(self) -> None:
        self.client.close()
        if self._local is not None:
            self._local.close()

    def __enter__(self) -> "Cluster":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _crashed(spec: WorkSpec, entry: FileEntry) -> Done:
    error = InputFileError(entry.path, CRASHED)
    if spec.kind == "index":
        return Done(entry, error)
    from .folder import build_row

    return Done(entry, error, None, build_row(entry, error, None, (), spec.settings, None))


def _count(progress, worker: str, files: int) -> None:
    if progress is not None:
        progress.workers[worker] = progress.workers.get(worker, 0) + files
