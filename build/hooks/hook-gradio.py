"""PyInstaller hook for gradio (pyinstaller-hooks-contrib has none).

Gradio reads its own `.py` source files at run time (it inspects component classes to build its event
list), so bytecode in the archive alone fails with FileNotFoundError: ship the sources beside it.
Its data files are the built web front end; the parts this app never serves are left out.
"""

from PyInstaller.utils.hooks import collect_data_files

module_collection_mode = "pyz+py"

# Left out: the server-side-rendering Node build (the app launches with ssr_mode=False), ffmpeg.wasm (only
# the Video component's in-browser trimming loads it; the app has no video component), example media and
# test data, and the changelog.
EXCLUDED = [
    "templates/node/**",
    "templates/frontend/static/ffmpeg/**",
    "media_assets/**",
    "test_data/**",
    "CHANGELOG.md",
    "**/*.map",
]

datas = collect_data_files("gradio", excludes=EXCLUDED)
