"""Which of gradio's built front-end chunks (templates/frontend/assets) a FusionDesk page can ever load.

Gradio ships one Vite build for every component it has (Plotly, 3D models with Babylon.js, Vega, the image editor,
the video trimmer...): 900 files, 21 MB. A page loads a component's code only when it shows that component, through
the component map in `core-*.js` (`name: {component: () => import("./Index-....js"), ...}`). So the chunks the app
can load are those reachable from `index.html` through the chunks' static and dynamic imports, with the map's
entries for components the app never shows cut off. Everything reachable only through those is left out of the
bundle. Files no import reaches even with every component (workers, fonts named at run time...) are kept: this
removes only what is provably behind an unused component.

tests/test_frozen.py checks that every component type the app's UI uses is in KEPT_COMPONENTS, and loads every tab
of the frozen app in Chromium watching for a request that fails.
"""

from __future__ import annotations

import re
from pathlib import Path

# What the app's pages use (desktop/ui.py, ui_folder.py, ui_teach.py), and what gradio itself uses for every page
# (status tracker, examples, layout, upload/download buttons, timers, browser state; the page also loads the
# walkthrough components with tabs, seen in the frozen page test): never cut.
KEPT_COMPONENTS = frozenset({
    "accordion", "audio", "button", "checkbox", "checkboxgroup", "column", "dataframe", "dropdown", "file", "form",
    "gallery", "group", "html", "image", "json", "label", "markdown", "number", "radio", "row", "slider", "state",
    "tabitem", "tabs", "textbox",
    "core", "statustracker", "dataset", "box", "navbar", "sidebar", "timer", "browserstate", "uploadbutton",
    "downloadbutton", "walkthrough", "walkthroughstep",
})

# The Vite preload table (`m.f=["./a.js","./b.css",...]`) names every chunk once; it is not an import.
_PRELOAD_TABLE = re.compile(r"m\.f=\[[^\]]*\]")
_CHUNK_REFERENCE = re.compile(r"""["'`]\./([A-Za-z0-9_.\-]+\.(?:js|css))["'`]""")
_MAP_ENTRY = re.compile(
    r"(?<![A-Za-z0-9_$])([a-z0-9_]+):\{((?:(?:base|example|component):\(\)=>v\(\(\)=>import\(`\./[^`]+`\)"
    r"[^}]*?import\.meta\.url\),?)+)\}")
_DYNAMIC_IMPORT = re.compile(r"import\(`\./([^`]+)`\)")


def _references(text: str) -> set[str]:
    return set(_CHUNK_REFERENCE.findall(_PRELOAD_TABLE.sub("", text)))


def unloadable_chunks(frontend: Path, kept: frozenset[str] = KEPT_COMPONENTS) -> tuple[set[str], set[str]]:
    """(chunk file names the page can never load, the component names cut), for a gradio `templates/frontend`."""
    assets = frontend / "assets"
    names = {path.name for path in assets.iterdir()}
    texts = {name: (assets / name).read_text(encoding="utf-8", errors="ignore") if name.endswith(".js") else ""
             for name in names}
    cut_edges: dict[str, set[str]] = {}
    cut_components: set[str] = set()
    for name, text in texts.items():
        for entry in _MAP_ENTRY.finditer(text):
            if entry.group(1) not in kept:
                cut_components.add(entry.group(1))
                cut_edges.setdefault(name, set()).update(_DYNAMIC_IMPORT.findall(entry.group(2)))
    roots = set(re.findall(r"assets/([A-Za-z0-9_.\-]+\.(?:js|css))", (frontend / "index.html").read_text(encoding="utf-8")))

    def reachable(with_cut: bool) -> set[str]:
        seen, stack = set(), list(roots)
        while stack:
            name = stack.pop()
            if name in seen or name not in names:
                continue
            seen.add(name)
            stack.extend(_references(texts[name]) - (cut_edges.get(name, set()) if with_cut else set()))
        return seen

    if not cut_edges:
        raise RuntimeError(f"no component map found in {assets}: gradio's front-end build changed; update {__file__}")
    return reachable(False) - reachable(True), cut_components
