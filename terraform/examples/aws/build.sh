#!/usr/bin/env bash
# Build build/orders-lambda.zip: cloudqueue, cloudqueue-aws, the samples package and
# orders_lambda.py, for Lambda's python3.11 on x86_64.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
build="$here/build"
rm -rf "$build/package" && mkdir -p "$build/package"
python3 -m pip install --quiet --target "$build/package" \
  --platform manylinux2014_x86_64 --python-version 3.11 --only-binary=:all: --implementation cp \
  pydantic click
# boto3 is in the Lambda runtime; install the two distributions without dependencies.
python3 -m pip install --quiet --target "$build/package" --no-deps "$repo" "$repo/adapters/aws"
cp -r "$repo/samples" "$build/package/"
cp "$here/orders_lambda.py" "$build/package/"
rm -f "$build/orders-lambda.zip"
(cd "$build/package" && python3 -m zipfile -c ../orders-lambda.zip .)
echo "$build/orders-lambda.zip"
