"""Cold start on Lambda's consume path: fresh interpreters, wall time net of a bare one.

Each row is the median of ``--runs`` fresh ``python -c`` processes, minus the median of
a bare interpreter. Peers: pydantic's BaseModel (every job needs it) and boto3 with an
SQS client (what a shim that imports boto3 up front pays).

    python -m bench.cold_start_aws [--runs 10]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from ._table import print_table

PROGRAMS = {
    "bare interpreter": "pass",
    "pydantic BaseModel": "from pydantic import BaseModel\nclass P(BaseModel):\n    to: str",
    "cloudqueue core + app + job": (
        "from pydantic import BaseModel\n"
        "import cloudqueue as cq\n"
        "class P(BaseModel):\n    to: str\n"
        "app = cq.App('shop', backend='memory://')\n"
        "@app.job\n"
        "def send_receipt(payload: P) -> None: ...\n"),
    "cloudqueue_aws + handler": (
        "from pydantic import BaseModel\n"
        "import cloudqueue as cq\n"
        "import cloudqueue_aws\n"
        "class P(BaseModel):\n    to: str\n"
        "app = cq.App('shop', backend='memory://')\n"
        "@app.job\n"
        "def send_receipt(payload: P) -> None: ...\n"
        "handler = cloudqueue_aws.lambda_handler(app)\n"
        "import sys\n"
        "assert 'boto3' not in sys.modules and 'botocore' not in sys.modules\n"),
    "boto3 + SQS client": (
        "import boto3\n"
        "boto3.client('sqs', region_name='us-east-1')\n"),
}


def wall(program: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", program], check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    for program in PROGRAMS.values():  # warm the file system cache and .pyc files
        wall(program)
    times: dict[str, list[float]] = {name: [] for name in PROGRAMS}
    for _ in range(args.runs):  # interleaved, so drift hits every row alike
        for name, program in PROGRAMS.items():
            times[name].append(wall(program))
    bare = statistics.median(times["bare interpreter"])
    rows = [(name, (statistics.median(values) - bare) * 1000)
            for name, values in times.items() if name != "bare interpreter"]
    print_table(f"Cold import, median of {args.runs} fresh processes, net of a bare interpreter "
                f"({bare * 1000:.1f} ms)", "ms", rows, higher_is_better=False,
                against="pydantic BaseModel")
    ours = dict(rows)["cloudqueue_aws + handler"] - dict(rows)["pydantic BaseModel"]
    own = dict(rows)["cloudqueue_aws + handler"] - dict(rows)["cloudqueue core + app + job"]
    print(f"  cloudqueue_aws + handler over pydantic: {ours:.1f} ms (budget: 40 ms), of which "
          f"cloudqueue_aws itself: {own:.1f} ms")


if __name__ == "__main__":
    main()
