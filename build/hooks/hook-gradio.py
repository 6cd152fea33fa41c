"""PyInstaller hook for gradio (pyinstaller-hooks-contrib has none).

Gradio reads its own `.py` source files at run time (it inspects component classes to build its event
list), so bytecode in the archive alone fails with FileNotFoundError: ship the sources beside it.
Its data files are the built web front end; the parts this app never serves are left out.
"""

import importlib.util
from pathlib import Path

from PyInstaller.utils.hooks import collect_data_files, get_package_paths

module_collection_mode = "pyz+py"

# Left out: the server-side-rendering Node build (the app launches with ssr_mode=False), ffmpeg.wasm (only
# the Video component's in-browser trimming loads it; the app has no video component), Bokeh's 2.1 MB library
# (only the plot component loads it), example media and test data, the changelog, and the front-end chunks only
# components the app never shows can load (gradio_frontend.py: Plotly, Vega, Babylon.js 3D, the image editor...).
EXCLUDED = [
    "templates/node/**",
    "templates/frontend/static/ffmpeg/**",
    "templates/frontend/static/bokeh/**",
    "media_assets/**",
    "test_data/**",
    "CHANGELOG.md",
    "**/*.map",
]


def _frontend_module():
    spec = importlib.util.spec_from_file_location("gradio_frontend", Path(__file__).with_name("gradio_frontend.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_unloadable, _cut = _frontend_module().unloadable_chunks(Path(get_package_paths("gradio")[1]) / "templates" / "frontend")
EXCLUDED += [f"templates/frontend/assets/{name}" for name in sorted(_unloadable)]

datas = collect_data_files("gradio", excludes=EXCLUDED)
