#!/usr/bin/env bash
# JupyterLab on the demo lake: `make lab` runs this (VENV and LAKE come from the Makefile).
#   - needs the `jupyter` extra in the venv (says how to install it otherwise);
#   - builds the demo lake first when it does not exist (`imagelake demo`, no Dask step);
#   - the notebooks find the lake through IMAGELAKE_LAKE (an absolute path);
#   - extra arguments go to `jupyter lab` (e.g. scripts/lab.sh --port 8899).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
LAKE="${LAKE:-./lake}"
if ! "$VENV/bin/python" -c 'import jupyterlab, ipywidgets' 2>/dev/null; then
  echo "JupyterLab is not installed in $VENV. Install the 'jupyter' extra:" >&2
  echo "  $VENV/bin/python -m pip install -e '.[dev,jupyter]'" >&2
  exit 1
fi
if [ ! -f "$LAKE/imagelake.json" ]; then
  echo "no demo lake at $LAKE yet: building it (imagelake demo --no-compute)"
  "$VENV/bin/imagelake" demo --lake "$LAKE" --no-compute
fi
IMAGELAKE_LAKE="$(cd "$LAKE" && pwd)"
export IMAGELAKE_LAKE
args=(--ServerApp.root_dir="$PWD" --LabApp.default_url=/lab/tree/notebooks/01_explore_the_lake.ipynb)
[ "$(id -u)" -eq 0 ] && args+=(--allow-root)
exec "$VENV/bin/jupyter" lab "${args[@]}" "$@"
