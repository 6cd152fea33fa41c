"""Import gradio without the work it does for its own developers: the window's start waits on this import.

Every component class gradio (6.31) defines has its type-stub file (`.pyi`) regenerated as the class is created:
gradio's ComponentMeta reads the class's source file, parses all of it with `ast`, renders a Jinja template and
compares (and may rewrite) the `.pyi` beside it. A development aid for gradio's own repository, run for every
component class on every import: 2.0 of the 5.0 s `import gradio` takes on 2 cores (`python -X importtime`), and
in an installed app it even tries to write into site-packages (or /opt). Skipping it changes nothing else: the
shipped `.pyi` files stay as they are, and type checkers still read them.

(pandas, 0.4 s of the import, stays: the app's Dataframes load it while the page is built anyway.)

`install()` must run before gradio is first imported; it adds an import hook that acts on one module, once, and
then removes itself.
"""

from __future__ import annotations

import importlib.abc
import sys
import threading


def _no_stub_regeneration(module) -> None:
    module.create_or_modify_pyi = lambda *args, **kwargs: None


# module name -> a function run on the module once it has executed
_ADJUST = {"gradio.component_meta": _no_stub_regeneration}


class _AfterExecLoader(importlib.abc.Loader):
    """Runs the module's own loader, then `after(module)`; anything else is asked of the original loader."""

    def __init__(self, loader, after):
        self._loader, self._after = loader, after

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        self._loader.exec_module(module)
        self._after(module)

    def __getattr__(self, name):  # get_source, is_package, get_resource_reader, ...
        return getattr(self._loader, name)


class _GradioImportHook(importlib.abc.MetaPathFinder):
    def __init__(self) -> None:
        self._pending = dict(_ADJUST)
        self._lock = threading.Lock()

    def find_spec(self, name, path, target=None):
        with self._lock:
            adjust = self._pending.pop(name, None)
            if not self._pending and self in sys.meta_path:
                sys.meta_path.remove(self)
        if adjust is None:
            return None
        spec = self._spec_from_the_other_finders(name, path, target)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _AfterExecLoader(spec.loader, adjust)
        return spec

    def _spec_from_the_other_finders(self, name, path, target):
        # The frozen app finds modules through PyInstaller's own finder, a source run through PathFinder: ask
        # whichever the interpreter would have asked.
        for finder in list(sys.meta_path):
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                return spec
        return None


def install() -> None:
    """Before gradio's first import; a no-op once it is imported (or when the hook is already there)."""
    if "gradio" in sys.modules or any(isinstance(f, _GradioImportHook) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _GradioImportHook())
