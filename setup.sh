#!/usr/bin/env bash
# One-time set-up: a virtual environment in .venv with requirements.txt, and Debian's
# Fashion-MNIST files (/usr/share/datasets/fashion-mnist) for offline training and tests.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -r requirements.txt
if [ ! -d /usr/share/datasets/fashion-mnist ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
  $SUDO apt-get install -y --no-install-recommends dataset-fashion-mnist \
    || { $SUDO apt-get update && $SUDO apt-get install -y --no-install-recommends dataset-fashion-mnist; }
fi
echo "set-up done: source .venv/bin/activate"
