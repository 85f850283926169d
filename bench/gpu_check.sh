#!/usr/bin/env bash
# Everything harness should prove on a GPU, in one command (bench/gpu_check.py says what):
#
#   bash bench/gpu_wheels.sh          # once, here, where pip reaches a registry (fills .whl/)
#   bash bench/gpu_check.sh           # there: figures into docs/gpu.md, and into $OUT where it is set
#   bash bench/gpu_check.sh --dry-run --out /tmp/gpu_check    # anywhere, on CPU at tiny shapes
#
# Installs the carried wheels (.whl/, bench/gpu_wheels.sh) into a folder of their own first, where they
# exist and this is not a dry run; everything else comes from the machine's image.
set -uo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
dry=0
for arg in "$@"; do [[ $arg == --dry-run ]] && dry=1; done
python=${PYTHON:-python3}
command -v "$python" >/dev/null || python=python
if [[ $dry == 0 && -d .whl ]] && compgen -G ".whl/*.whl" >/dev/null; then
    site=${HARNESS_WHEELS_SITE:-/tmp/harness-site}
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/*.whl \
        || { echo "gpu_check: could not install the wheels in .whl/" >&2; exit 1; }
    export PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH}
fi
if [[ $dry == 0 && -d .whl/site ]]; then  # packages carried as folders (bench/gpu_wheels.sh)
    export PYTHONPATH=$repo/.whl/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$repo${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1
exec "$python" bench/gpu_check.py "$@"
