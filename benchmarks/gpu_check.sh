#!/usr/bin/env bash
# The one command for a machine with a CUDA GPU (issue 24): every owed GPU figure and every
# CUDA code path once, in under 8 minutes with set-up; see benchmarks/gpu_check.py.
#
#   bash benchmarks/gpu_check.sh [--out DIR] [--only PART]...   # on the GPU machine
#   bash benchmarks/gpu_check.sh --dry-run                      # on CPU at tiny sizes (CI)
#
# Set-up needs no network (a lent GPU machine reaches none): no venv is built there. The Python
# is $VLBENCH_GPU_PYTHON, else this checkout's .venv when its torch sees a CUDA device (for
# --dry-run: when it imports torch), else python3 (a GPU image's, with torch built for CUDA).
# What vlbench needs beyond such an image (open_clip_torch, ftfy, wcwidth) and CLIP_benchmark's
# own packages come from .gpu/, which `make gpu-prepare` fills where PyPI is reachable
# (benchmarks/gpu_prepare.sh) and which travels with the checkout as an ignored, carried folder.
set -uo pipefail
cd "$(dirname "$0")/.."
dry=0
for a in "$@"; do [ "$a" = --dry-run ] && dry=1; done
if [ $dry = 1 ]; then probe='import torch'; else probe='import torch, sys; sys.exit(not torch.cuda.is_available())'; fi
PY="${VLBENCH_GPU_PYTHON:-}"
if [ -z "$PY" ]; then
    for c in "$PWD/.venv/bin/python" python3; do
        if command -v "$c" >/dev/null 2>&1 && "$c" -c "$probe" >/dev/null 2>&1; then PY="$(command -v "$c")"; break; fi
    done
fi
if [ -z "$PY" ]; then
    what="torch"; [ $dry = 1 ] || what="torch that sees a CUDA device"
    echo "gpu-check: no Python with $what (tried .venv/bin/python, python3; set VLBENCH_GPU_PYTHON)" >&2
    exit 2
fi
# this checkout's harness first, then the carried packages, then the interpreter's own
export PYTHONPATH="$PWD:$PWD/.gpu/site${PYTHONPATH:+:$PYTHONPATH}"
export VLBENCH_GPU_PYTHON="$PY"          # .gpu/cb-python runs CLIP_benchmark with the same interpreter
export HF_HUB_OFFLINE=1 VLBENCH_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
# a fresh cache: every run is cold (generated synthetic data lands here too)
export VLBENCH_CACHE="${VLBENCH_GPU_CACHE:-$(mktemp -d "${TMPDIR:-/tmp}/vlbench-gpu-check.XXXXXX")}"
exec "$PY" benchmarks/gpu_check.py "$@"
