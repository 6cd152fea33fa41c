"""One place that makes ONNX Runtime sessions.

Every model in the app, bundled or user-trained, runs through `Runtime.session()`:
- providers are chosen from what this onnxruntime build has (CUDA, DirectML, CoreML, CPU) and the
  `device` setting (auto|cpu|gpu); a requested provider that did not load is reported, not hidden;
- the CPU memory arena is off (it holds peak memory forever, which a long-running desktop app cannot afford),
  except for models whose manifest entry asks for it (`"session": {"memory_arena": true}`): a CNN on a batch of
  images allocates tens of MB per layer, and without the arena every run page-faults them in again (measured by
  the build step that sets it);
- models whose manifest entry asks for it (`"session": {"split_batches": true}`) run a batch as one sub-batch per
  core at once, each on one thread, instead of the whole batch with every layer split across the cores: the layers
  of small models are too small to share out well (measured both ways by bench/bench_encoders.py; CPU only);
- intra-op threads default to the physical core count, and sleep rather than spin between runs;
- sessions load lazily, once, under a per-model lock (parallel loads of the same model waste memory).
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from .errors import FusionDeskError
from .manifest import ModelBundle

log = logging.getLogger(__name__)

GPU_PROVIDERS = ("CUDAExecutionProvider", "DmlExecutionProvider", "CoreMLExecutionProvider")
DEVICES = ("auto", "cpu", "gpu")


class ProviderWarning(UserWarning):
    """A requested execution provider is not available or did not load; the model runs on CPU instead."""


def choose_providers(device: str = "auto", available: list[str] | None = None) -> list[str]:
    """Ordered providers for a device setting, from what this onnxruntime build offers."""
    if device not in DEVICES:
        raise FusionDeskError(f"unknown device {device!r}: choose one of {', '.join(DEVICES)}")
    available = list(ort.get_available_providers() if available is None else available)
    if device == "cpu":
        return ["CPUExecutionProvider"]
    gpus = [p for p in GPU_PROVIDERS if p in available]
    if device == "gpu" and not gpus:
        warnings.warn(
            f"a GPU was requested but this onnxruntime build has no GPU provider (available: {', '.join(available)}); "
            "running on CPU",
            ProviderWarning,
            stacklevel=2,
        )
    return gpus + ["CPUExecutionProvider"]


def default_threads() -> int:
    # Physical cores rather than logical ones: ORT's intra-op threads spin, and hyperthreads only contend.
    count = os.cpu_count() or 1
    try:
        import psutil  # optional

        count = psutil.cpu_count(logical=False) or count
    except ImportError:
        pass
    return max(1, count)


@dataclass
class SessionInfo:
    model_id: str
    file_key: str
    providers: list[str]  # what the session actually runs on, in priority order


class SplitBatchSession:
    """An ONNX Runtime session whose batches run as sub-batches, one per worker, at the same time.

    Every input and output has the batch as its first axis (the build only asks for this on such models). The
    calling thread runs the first sub-batch itself; the pool runs the rest. ONNX Runtime releases the GIL while it
    runs, and one session may run from several threads at once, so the weights are loaded once.
    Anything else (get_inputs, get_providers, ...) is the wrapped session's."""

    def __init__(self, session: ort.InferenceSession, pool: ThreadPoolExecutor, workers: int):
        self._session = session
        self._pool = pool
        self.workers = workers

    def run(self, output_names, input_feed: dict, run_options=None) -> list:
        batch_sizes = {np.shape(value)[0] if np.ndim(value) else None for value in input_feed.values()}
        batch = batch_sizes.pop() if len(batch_sizes) == 1 else None
        parts = min(self.workers, batch or 1)
        if parts < 2:
            return self._session.run(output_names, input_feed, run_options)
        bounds = np.linspace(0, batch, parts + 1).round().astype(int)
        feeds = [{name: value[start:stop] for name, value in input_feed.items()}
                 for start, stop in zip(bounds[:-1], bounds[1:])]
        others = [self._pool.submit(self._session.run, output_names, feed, run_options) for feed in feeds[1:]]
        try:
            first = self._session.run(output_names, feeds[0], run_options)
        finally:
            # Never return (or raise) while a sub-batch is still running on this session.
            results = [future.exception() or future.result() for future in others]
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return [np.concatenate(parts_of_output) for parts_of_output in zip(first, *results)]

    def __getattr__(self, name: str):
        return getattr(self._session, name)


class Runtime:
    """Lazily created, cached ONNX Runtime sessions for the models of one bundle."""

    def __init__(self, bundle: ModelBundle | None = None, device: str = "auto", threads: int | None = None,
                 split_batches: bool = True):
        self._bundle = bundle
        self.device = device
        self.threads = threads or default_threads()
        self.split_batches = split_batches  # False ignores the manifest's split_batches (benchmarks compare both)
        choose_providers(device, ort.get_available_providers())  # validate the setting early
        self._sessions: dict[tuple[str, str], ort.InferenceSession] = {}
        self._info: dict[tuple[str, str], SessionInfo] = {}
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None  # runs split batches' other sub-batches; made on first use

    @property
    def bundle(self) -> ModelBundle:
        if self._bundle is None:
            self._bundle = ModelBundle()
        return self._bundle

    def session(self, model_id: str, file_key: str = "model") -> ort.InferenceSession:
        key = (model_id, file_key)

        def make():
            wanted = self.bundle.entry(model_id).extra.get("session", {})
            split = (self.split_batches and bool(wanted.get("split_batches", False)) and self.threads > 1
                     and self._runs_on_cpu())
            session = self._open(self.bundle.path(model_id, file_key), key,
                                 memory_arena=bool(wanted.get("memory_arena", False)),
                                 threads=1 if split else self.threads)
            return SplitBatchSession(session, self._batch_pool(), self.threads) if split else session

        return self._cached_session(key, make)

    def _cached_session(self, key: tuple[str, str], make) -> ort.InferenceSession:
        """The session under `key`, made once by `make()` (one lock per key: two models load at once, one
        model never twice)."""
        found = self._sessions.get(key)
        if found is not None:
            return found
        with self._locks_guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._sessions:
                self._sessions[key] = make()
            return self._sessions[key]

    def run_each(self, model_id: str, file_key: str, feeds: list[dict], output_names: list[str] | None = None
                 ) -> list[list[np.ndarray]]:
        """Run one model on several inputs of different shapes (pictures of any size), one input per core at a
        time, each run on one thread. For a small model on small inputs this beats one run at a time with the
        layers split across the cores: the OCR detector on 2 cores, a 448 x 320 picture 27 -> 20 ms, 192 x 128
        10.5 -> 4.4 ms (and batching them would need one shape). Runs in order on a GPU."""
        if not feeds:
            return []
        if self.threads < 2 or not self._runs_on_cpu():
            session = self.session(model_id, file_key)
            return [session.run(output_names, feed) for feed in feeds]
        session = self._one_thread_session(model_id, file_key)
        workers = min(self.threads, len(feeds))
        shares = [list(range(start, len(feeds), workers)) for start in range(workers)]

        def run_share(indices: list[int]) -> list[tuple[int, list[np.ndarray]]]:
            return [(i, session.run(output_names, feeds[i])) for i in indices]

        others = [self._batch_pool().submit(run_share, share) for share in shares[1:]]
        try:
            done = run_share(shares[0])
        finally:
            # Never return (or raise) while a share is still running on this session.
            finished = [future.exception() or future.result() for future in others]
        for result in finished:
            if isinstance(result, BaseException):
                raise result
            done += result
        return [outputs for _, outputs in sorted(done, key=lambda pair: pair[0])]

    def _one_thread_session(self, model_id: str, file_key: str) -> ort.InferenceSession:
        """A second session of the same file that runs on one thread (run_each runs several of its inputs at once)."""
        key = (model_id, f"{file_key}#one-thread")

        def make():
            wanted = self.bundle.entry(model_id).extra.get("session", {})
            return self._open(self.bundle.path(model_id, file_key), key,
                              memory_arena=bool(wanted.get("memory_arena", False)), threads=1)

        return self._cached_session(key, make)

    def _runs_on_cpu(self) -> bool:
        return choose_providers(self.device)[0] == "CPUExecutionProvider"

    def _batch_pool(self) -> ThreadPoolExecutor:
        with self._locks_guard:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.threads - 1, thread_name_prefix="fusiondesk-batch")
            return self._pool

    def session_for_file(self, path: Path | str, key: tuple[str, str] | None = None,
                         content: bytes | None = None) -> ort.InferenceSession:
        """A session for an ONNX file outside the bundle (a user's trained head, a test's tiny model). `content`:
        the file's bytes as the caller already read and checked them, so that exactly those run (the file on
        disk could have been replaced since)."""
        path = Path(path)
        key = key or (f"file:{path.resolve()}", "model")

        def make():
            if content is None and not path.is_file():
                raise FusionDeskError(f"model file {path} does not exist")
            return self._open(path, key, content=content)

        return self._cached_session(key, make)

    def info(self, model_id: str, file_key: str = "model") -> SessionInfo | None:
        return self._info.get((model_id, file_key))

    def providers_for(self, model_id: str, file_key: str = "model") -> list[str]:
        """Providers the model runs on (loads it if needed)."""
        self.session(model_id, file_key)
        return self._info[(model_id, file_key)].providers

    def loaded(self) -> list[SessionInfo]:
        return list(self._info.values())

    def close(self) -> None:
        self._sessions.clear()
        self._info.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _open(self, path: Path, key: tuple[str, str], memory_arena: bool = False,
              threads: int | None = None, content: bytes | None = None) -> ort.InferenceSession:
        options = ort.SessionOptions()
        options.enable_cpu_mem_arena = memory_arena
        options.intra_op_num_threads = threads or self.threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Worker threads go to sleep after each run instead of spinning: the app alternates sessions (OCR's three
        # models, Whisper's encoder and decoder, the classifier's int8/fp32 cascade) with numpy work in between,
        # and a finished session's spinning threads took the cores from the next one. Measured: the cascade 215 ->
        # 410 img/s, Whisper tiny.en 0.223 -> 0.183 s per clip; one model alone in a loop loses ~3%.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3  # ORT's own warnings go to stderr unformatted; we report what matters
        wanted = choose_providers(self.device)
        try:
            session = ort.InferenceSession(content if content is not None else str(path), sess_options=options,
                                           providers=wanted)
        except Exception as exc:  # ORT raises its own exception types; turn them into one readable message
            raise FusionDeskError(f"cannot load model file {path}: {exc}") from exc
        got = session.get_providers()
        missing = [p for p in wanted if p not in got]
        if missing:
            warnings.warn(
                f"{key[0]}: provider(s) {', '.join(missing)} did not load; running on {', '.join(got)}",
                ProviderWarning,
                stacklevel=3,
            )
        self._info[key] = SessionInfo(model_id=key[0], file_key=key[1], providers=got)
        log.debug("loaded %s/%s on %s", key[0], key[1], got)
        return session


_default_runtime: Runtime | None = None
_default_guard = threading.Lock()


def get_runtime() -> Runtime:
    """The process-wide runtime, configured from the user's settings on first use."""
    global _default_runtime
    with _default_guard:
        if _default_runtime is None:
            from .settings import load_settings

            settings = load_settings()
            _default_runtime = Runtime(device=settings.device, threads=settings.threads or None)
        return _default_runtime


def set_runtime(runtime: Runtime | None) -> None:
    """Replace the process-wide runtime (a device/threads change in the settings, or a test's own bundle)."""
    global _default_runtime
    with _default_guard:
        _default_runtime = runtime
