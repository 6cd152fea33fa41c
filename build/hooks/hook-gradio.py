"""PyInstaller hook for gradio (pyinstaller-hooks-contrib has none).

Gradio reads its own `.py` source files at run time (it inspects component classes to build its event
list), so bytecode in the archive alone fails with FileNotFoundError: ship the sources beside it.
Its data files are the built web front end; the parts this app never serves are left out.
"""

from PyInstaller.utils.hooks import collect_data_files

module_collection_mode = "pyz+py"

# Left out: the server-side-rendering Node build (the app launches with ssr_mode=False), ffmpeg.wasm (only
# the Video component's in-browser trimming loads it; the app has no video component), example media and
# test data, and the changelog. The plot components' chunks (Plotly 4.6 MB, Vega/Altair, Bokeh and its 2.1 MB
# static library) are loaded only when a page has a gr.Plot, and the app has none; gradio 6's import graph
# (static and dynamic imports between its chunks) reaches these files only through those components.
EXCLUDED = [
    "templates/node/**",
    "templates/frontend/static/ffmpeg/**",
    "templates/frontend/static/bokeh/**",
    "templates/frontend/assets/PlotlyPlot-*",
    "templates/frontend/assets/AltairPlot-*",
    "templates/frontend/assets/BokehPlot-*",
    "media_assets/**",
    "test_data/**",
    "CHANGELOG.md",
    "**/*.map",
]

datas = collect_data_files("gradio", excludes=EXCLUDED)
