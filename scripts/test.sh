#!/usr/bin/env bash
# Set up .venv (core, every adapter, the test tools) and run the test suite.
# Arguments go to pytest, e.g. `bash scripts/test.sh tests/unit -x`.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
packages=(-e ".[dev,bench]")
for adapter in adapters/*/; do
  [ -f "$adapter/pyproject.toml" ] && packages+=(-e "${adapter%/}[test]")
done
# tests/terraform needs python-hcl2 (checkov gets a virtualenv of its own, made by the tests)
.venv/bin/python -m pip install -q "${packages[@]}" -r tests/terraform/requirements.txt

exec .venv/bin/python -m pytest "$@"
