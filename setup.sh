#!/usr/bin/env bash
# One-time set-up: a virtual environment in .venv with requirements.txt, and Debian's
# Fashion-MNIST files (/usr/share/datasets/fashion-mnist) for offline training and tests.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# uv installs the wheels and compiles their bytecode several times faster than pip (measured on a
# 2-core VM: 10 s against 31 s); pip itself where uv cannot be installed.
if .venv/bin/python -m pip install --quiet uv; then
  .venv/bin/uv pip install --quiet --compile-bytecode --python .venv/bin/python -r requirements.txt
else
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -r requirements.txt
fi
# Debian's packages: Fashion-MNIST's files, and torchvision for the system Python (reference
# models that the published-weights tests compare against; the virtual environment needs no torch).
PACKAGES=()
[ -d /usr/share/datasets/fashion-mnist ] || PACKAGES+=(dataset-fashion-mnist)
/usr/bin/python3 -c 'import torchvision' 2>/dev/null || PACKAGES+=(python3-torchvision)
if [ ${#PACKAGES[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
  $SUDO apt-get install -y --no-install-recommends "${PACKAGES[@]}" \
    || { $SUDO apt-get update && $SUDO apt-get install -y --no-install-recommends "${PACKAGES[@]}"; }
fi
echo "set-up done: source .venv/bin/activate"
