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

# the dashboard's browser tests drive Debian's chromium through its chromedriver
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1; then
  echo "test.sh: /usr/bin/chromium is missing: apt-get install -y chromium chromium-driver (up to 15 min)" >&2
  if [ "$(id -u)" = 0 ] && timeout 900 sh -c 'apt-get update -q -o DPkg::Lock::Timeout=300 >/dev/null &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=300 \
        chromium chromium-driver >/dev/null'; then
    echo "test.sh: installed $(/usr/bin/chromium --version 2>/dev/null)" >&2
  else
    echo "test.sh: could not install chromium (not root, or apt-get failed): the browser tests skip (fail with CI=true)" >&2
  fi
fi

exec .venv/bin/python -m pytest "$@"
