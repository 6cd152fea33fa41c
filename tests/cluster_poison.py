"""Preloaded into the test cluster's workers (`dask worker --preload tests/cluster_poison.py`): decoding a
picture whose name starts with "poison" crashes the worker process with SIGSEGV, as a decoder's bug on one
file would (no Python exception, the process is just gone). Nothing else changes; the driver does not load it."""

import os
import signal

import engine.imaging

# Dask may import a preload file more than once: wrap the real loader, never a wrapper.
_load_image = getattr(engine.imaging.load_image, "wrapped", engine.imaging.load_image)


def _load_image_or_crash(path, *args, **kwargs):
    if os.path.basename(str(path)).startswith("poison"):
        os.kill(os.getpid(), signal.SIGSEGV)
    return _load_image(path, *args, **kwargs)


_load_image_or_crash.wrapped = _load_image
engine.imaging.load_image = _load_image_or_crash
