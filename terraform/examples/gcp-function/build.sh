#!/usr/bin/env bash
# Build terraform/examples/build/orders-function.zip, the source of the orders Cloud Function for
# both GCP examples: main.py, the samples package, and the repository's two distributions
# as wheels that requirements.txt installs at build time.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
src="$here/../build/function"
rm -rf "$src" && mkdir -p "$src/wheels"
python3 -m pip wheel --quiet --no-deps --wheel-dir "$src/wheels" "$repo" "$repo/adapters/gcp"
cp -r "$repo/samples" "$src/"
cp "$here/main.py" "$src/main.py"
{
  for wheel in "$src"/wheels/*.whl; do echo "./wheels/$(basename "$wheel")"; done
  echo "functions-framework>=3"
} > "$src/requirements.txt"
rm -f "$here/../build/orders-function.zip"
(cd "$src" && python3 -m zipfile -c ../orders-function.zip .)
echo "$here/../build/orders-function.zip"
