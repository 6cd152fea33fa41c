#!/usr/bin/env bash
# The conversion environment build/.venv-tf (TensorFlow + tf2onnx), build time only: build/scene_step.py runs
# build/tf_convert.py in it to turn the scene models (TFJS NanoDet, TFLite MediaPipe selfie) into ONNX.
# Never shipped, never imported by the app or by build/.venv.
#
#   bash build/setup_tf.sh            make it (a no-op when build/requirements-tf.txt has not changed)
#   source build/setup_tf.sh; setup_tf_env    the same from build/setup.sh ($PYTHON: a Python 3.11)

setup_tf_env() {
  local root python want
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  python="${PYTHON:-$(command -v python3.11 || command -v python3)}"
  want="$(sha256sum "$root/build/requirements-tf.txt" | cut -c1-16)"
  if [ -f "$root/build/.venv-tf/.fusiondesk-stamp" ] && [ "$(cat "$root/build/.venv-tf/.fusiondesk-stamp")" = "$want" ]; then
    return 0
  fi
  printf '\033[1m==> %s\033[0m\n' "creating the conversion environment build/.venv-tf (TensorFlow, tf2onnx: build time only)" >&2
  "$python" -m venv "$root/build/.venv-tf"
  "$root/build/.venv-tf/bin/pip" install -q -r "$root/build/requirements-tf.txt" 2>&1 \
    | grep -v "is ignored: it is neither a file nor a directory" || true
  # Fail here, not in the middle of a build
  "$root/build/.venv-tf/bin/python" -c "import tensorflow, tf2onnx, onnx" 2>/dev/null \
    || { echo "build/.venv-tf: TensorFlow or tf2onnx did not install" >&2; return 1; }
  echo "$want" > "$root/build/.venv-tf/.fusiondesk-stamp"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  setup_tf_env
fi
