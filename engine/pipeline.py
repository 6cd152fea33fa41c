"""The stream every file command runs through: decode on a thread pool -> perceive a batch at a time.

    for batch in perceive_stream(entries, perceiver):
        for entry, perception_or_error in batch: ...

`classify`, `describe`, `embed` and the Files tab (a list of files), `batch` and `index` (a walked folder) and
Teach all use it, so a file is decoded and perceived the same way whichever surface it comes through:
- files are decoded on a thread pool, a few batches ahead of the models, while the models run on the batch
  before (libjpeg, zlib and ONNX Runtime all release the GIL, so the two cores stay busy);
- images are decoded small (JPEG DCT scaling): as small as the classifier, the text-presence check and the
  detector allow; the few that turn out to hold text are decoded again at reading resolution (engine.perceive);
- a batch holds its decoded files only while it is in flight, so memory stays flat however many files there are;
- a file's own fault (corrupt, truncated, empty, unreadable) becomes its error, never the batch's.
"""

from __future__ import annotations

import stat
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from .errors import FusionDeskError, InputFileError
from .filetypes import modality_of, read_text_file
from .perceive import ImageInput, Perceiver, Perception, guard_file
from .runtime import Runtime

# The long side images are decoded at for the classifier, the text-presence check and the detector: a 3:1
# panorama keeps a short side of 256 for the classifier, and a batch in flight holds small pictures whatever
# the cameras made. Reading text needs more, and gets it from a second decode of just the files with text.
WORKING_MAX_SIDE = 768
# Recordings up to this long are decoded ahead on the pool like pictures (4 MB each); longer ones are read a block
# at a time when their turn comes (engine.audio.AudioFile), so a folder of two-hour recordings, dozens of them in
# flight, does not hold gigabytes.
PRELOAD_AUDIO_SECONDS = 60.0


@dataclass(frozen=True)
class FileEntry:
    """A file to process. `problem` set: it cannot be used, and gets an error without decoding."""

    path: Path
    rel: str  # the name results carry: relative to a walked folder (forward slashes), or the path as given
    size: int
    mtime: float
    modality: str | None
    problem: str | None = None

    @property
    def key(self) -> tuple[str, int, float]:
        return (self.rel, self.size, self.mtime)


def entry_for(path: Path | str) -> FileEntry:
    """A FileEntry for a file named on the command line (or dropped in the app), with its problem if any."""
    given = str(path)
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        return FileEntry(path, given, 0, 0.0, None, "no such file")
    except OSError as exc:  # a symbolic link loop, a name too long, a folder we may not enter
        return FileEntry(path, given, 0, 0.0, None, f"cannot open the file ({exc.strerror or exc})")
    if stat.S_ISDIR(info.st_mode):
        return FileEntry(path, given, 0, 0.0, None, "is a folder, not a file (use `fusiondesk batch` for folders)")
    try:
        modality = modality_of(path)
    except InputFileError as exc:
        return FileEntry(path, given, info.st_size, info.st_mtime, None, exc.problem)
    return FileEntry(path, given, info.st_size, info.st_mtime, modality)


@dataclass
class Decoded:
    entry: FileEntry
    payload: Any = None  # ImageInput | float32 samples or an AudioFile to stream | str
    error: InputFileError | None = None


@dataclass
class Done:
    """One finished file: what was perceived (or its error), its fused vector, and a batch run's result row."""

    entry: FileEntry
    perceived: Perception | InputFileError
    vector: np.ndarray | None = None
    row: dict[str, Any] | None = None  # None: indexing only

    def for_driver(self) -> "Done":
        """Without what only the models needed (probabilities, features, masks, tokens): what a cluster worker
        sends back, since the driver stores and writes only the texts, the vector and the row."""
        if not isinstance(self.perceived, Perception):
            return self
        light = replace(self.perceived, tokens=[], image_probs=None, image_feature=None, acoustic_feature=None,
                        people_mask=None)
        return Done(self.entry, light, self.vector, self.row)


def image_sides(perceiver: Perceiver) -> tuple[int, int | None]:
    """(max_side, min_side) to decode images at for this perceiver's plan."""
    runtime = perceiver.runtime
    if perceiver.options.ocr == "always":
        # Every image is read in full: decode once, at reading resolution.
        from .ocr import MODEL_ID

        return int(runtime.bundle.entry(MODEL_ID).preprocess.get("max_side_len", 2000)), None
    from .image import settings

    min_side = int(settings(runtime)["resize"])
    if perceiver.options.objects and "object-detector" in runtime.bundle:
        # The detector letterboxes into its own input: keep at least that many pixels for it.
        detector = runtime.bundle.entry("object-detector").preprocess
        min_side = max(min_side, *map(int, detector["input_size"]))
    return WORKING_MAX_SIDE, min_side


def decode(entry: FileEntry, sides: tuple[int | None, int | None] = (None, None),
           perceiver: Perceiver | None = None) -> Decoded:
    """Read one file into memory; never raises for the file's own faults. sides: (max_side, min_side).
    perceiver: also do what each picture alone needs before its plan's batched models run (ImageInput.prepare)."""
    if entry.problem:
        return Decoded(entry, error=InputFileError(entry.path, entry.problem))
    try:
        if entry.modality == "image":
            from .imaging import load_image

            image = load_image(entry.path, max_side=sides[0], min_side=sides[1])
            item = ImageInput(image, str(entry.path), entry.path, _reduction(entry.path, image.size))
            if perceiver is not None:
                item.prepare(perceiver.options, perceiver.runtime)
            return Decoded(entry, item)
        if entry.modality == "audio":
            from .audio import AudioFile

            source = AudioFile(entry.path)  # the header and the file's end are checked here
            if source.seconds is not None and source.seconds <= PRELOAD_AUDIO_SECONDS:
                return Decoded(entry, source.read())
            return Decoded(entry, source)  # long (or of unknown length): streamed when perceived, never held whole
        return Decoded(entry, read_text_file(entry.path))
    except InputFileError as exc:
        return Decoded(entry, error=exc)
    except FusionDeskError:
        raise
    except Exception as exc:  # a decoder's own bug on a strange file must not stop the run
        return Decoded(entry, error=InputFileError(entry.path, f"cannot decode the file ({type(exc).__name__}: {exc})"))


def _reduction(path: Path, decoded_size: tuple[int, int]) -> tuple[float, float]:
    """How much smaller than the file the decoded image is (the header only is read: no second decode)."""
    from .imaging import upright_size

    width, height = upright_size(path)
    return width / decoded_size[0], height / decoded_size[1]


def perceive_decoded(batch: list[Decoded], perceiver: Perceiver) -> list[Perception | InputFileError]:
    """Perceive one batch: images through one call per model, texts through one text-encoder call,
    recordings one by one."""
    results: list[Perception | InputFileError | None] = [d.error for d in batch]
    images = [i for i, d in enumerate(batch) if d.error is None and d.entry.modality == "image"]
    texts = [i for i, d in enumerate(batch) if d.error is None and d.entry.modality == "text"]
    if images:
        _perceive_images(batch, images, perceiver, results)
    if texts:
        _perceive_texts(batch, texts, perceiver, results)
    for i, item in enumerate(batch):
        if item.error is None and item.entry.modality == "audio":
            results[i] = guard_file(item.entry.path, lambda item=item: perceiver.perceive_audio(item.payload, str(item.entry.path)))
    return results  # type: ignore[return-value]


def _perceive_images(batch: list[Decoded], indices: list[int], perceiver: Perceiver, results: list) -> None:
    found = guard_file(batch[indices[0]].entry.path, lambda: perceiver.perceive_images([batch[i].payload for i in indices]))
    if isinstance(found, list):
        for i, perception in zip(indices, found):
            results[i] = perception
        return
    # One odd image failed the whole batch: redo them one by one so only that file gets the error.
    for i in indices:
        one = guard_file(batch[i].entry.path, lambda i=i: perceiver.perceive_images([batch[i].payload]))
        results[i] = one[0] if isinstance(one, list) else one


def _perceive_texts(batch: list[Decoded], indices: list[int], perceiver: Perceiver, results: list) -> None:
    texts = [batch[i].payload for i in indices]
    names = [str(batch[i].entry.path) for i in indices]
    found = guard_file(batch[indices[0]].entry.path, lambda: perceiver.perceive_texts(texts, names))
    if isinstance(found, list):
        for i, perception in zip(indices, found):
            results[i] = perception
        return
    for i, text, name in zip(indices, texts, names):
        results[i] = guard_file(batch[i].entry.path, lambda text=text, name=name: perceiver.perceive_text(text, name))


def perceive_stream(
    entries: Iterable[FileEntry],
    perceiver: Perceiver,
    workers: int = 4,
    batch_size: int = 16,
    in_flight: int = 3,
    stop: threading.Event | None = None,
    with_images: Callable[[list[Decoded], list[Perception | InputFileError]], None] | None = None,
) -> Iterator[list[tuple[FileEntry, Perception | InputFileError]]]:
    """Batches of (entry, perception or error), in the entries' order, decoding up to `in_flight` batches ahead.

    with_images: called with each decoded batch and its perceptions, for work that needs the pictures
    themselves (they are let go once it returns)."""
    sides = image_sides(perceiver)
    chunks = chunked(entries, batch_size)
    pending: deque[list[Future]] = deque()
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="decode") as pool:
        def submit_next() -> bool:
            chunk = next(chunks, None)
            if chunk is None:
                return False
            pending.append([pool.submit(decode, entry, sides, perceiver) for entry in chunk])
            return True

        try:
            while len(pending) < in_flight and submit_next():
                pass
            while pending and not (stop is not None and stop.is_set()):
                decoded = [future.result() for future in pending.popleft()]
                submit_next()  # keep the decoders busy while this batch is perceived
                perceptions = perceive_decoded(decoded, perceiver)
                if with_images is not None:
                    with_images(decoded, perceptions)
                yield [(d.entry, p) for d, p in zip(decoded, perceptions)]
        finally:
            # Stopped or abandoned early: do not decode batches nobody will perceive.
            for futures in pending:
                for future in futures:
                    future.cancel()


def perceive_paths(paths: Iterable[Path | str], perceiver: Perceiver, batch_size: int = 16
                   ) -> Iterator[tuple[str, Perception | InputFileError]]:
    """(path as given, perception or error) for files named one by one, streamed in order: a list of any
    length is perceived with the memory of a few batches."""
    for batch in perceive_stream((entry_for(path) for path in paths), perceiver, perceiver.decode_workers, batch_size):
        for entry, perceived in batch:
            yield entry.rel, perceived


def chunked(items: Iterable[FileEntry], size: int) -> Iterator[list[FileEntry]]:
    chunk: list[FileEntry] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def fused_vectors(perceptions: list[Perception | InputFileError], runtime: Runtime) -> list[np.ndarray | None]:
    """Each item's fused vector through one fusion-head call; None where nothing was perceived."""
    from .fusion import run_head

    have = [i for i, p in enumerate(perceptions) if isinstance(p, Perception) and p.tokens]
    vectors: list[np.ndarray | None] = [None] * len(perceptions)
    if have:
        dim = perceptions[have[0]].tokens[0].vector.shape[-1]
        fused, _, _ = run_head([perceptions[i].tokens for i in have], np.zeros((0, dim), np.float32), runtime)
        for i, vector in zip(have, fused):
            vectors[i] = vector
    return vectors
