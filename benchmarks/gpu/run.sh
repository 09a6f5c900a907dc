#!/usr/bin/env bash
# The GPU kit, in one call on a machine with PyTorch and/or JAX and no TensorFlow (benchmarks/gpu/kit.py):
#   bash benchmarks/gpu/run.sh [--quick] [--out DIR] [--epochs-to-94 N] ...
# `make gpu-kit` builds its wheels and recipes here first; they travel with the working tree.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON="${PYTHON:-python3}"
SITE="${TMPDIR:-/tmp}/convbench-gpu-kit-$("$PYTHON" -c 'import sys; print("%d%d" % sys.version_info[:2])')"
"$PYTHON" benchmarks/gpu/install_wheels.py --wheels benchmarks/gpu/wheels --target "$SITE"
export PYTHONPATH="$SITE:$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
exec "$PYTHON" benchmarks/gpu/kit.py "$@"
