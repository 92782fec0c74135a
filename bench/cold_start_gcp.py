"""Cold start on a Google function's consume path: fresh interpreters, wall time net of a bare one.

Each row is the median of ``--runs`` fresh ``python -c`` processes, minus the median of
a bare interpreter. The row that counts is ``import cloudqueue_gcp`` plus building the
HTTP handler (OIDC verification on, as deployed). The first request also loads what
checking its token needs (google-auth's JWT code and cryptography): measured apart.
Peers: pydantic's BaseModel (every job needs it), and the Cloud Tasks and Pub/Sub client
libraries (what a shim that imports them up front pays).

    python -m bench.cold_start_gcp [--runs 10]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from ._table import print_table

_APP = (
    "from pydantic import BaseModel\n"
    "import cloudqueue as cq\n"
    "class P(BaseModel):\n    to: str\n"
    "app = cq.App('shop', backend='cloudtasks://acme/europe-west1/jobs?target=https://fn.example/"
    "&service_account=invoker@acme.iam.gserviceaccount.com')\n"
    "@app.job\n"
    "def send_receipt(payload: P) -> None: ...\n")

PROGRAMS = {
    "bare interpreter": "pass",
    "pydantic BaseModel": "from pydantic import BaseModel\nclass P(BaseModel):\n    to: str",
    "cloudqueue core + app + job": _APP,
    "cloudqueue_gcp + handler": (
        _APP
        + "import cloudqueue_gcp\n"
        "handler = cloudqueue_gcp.http_handler(app)\n"
        "import sys\n"
        "assert not [m for m in sys.modules if m.startswith(('google.cloud.', 'grpc', 'google.auth'))]\n"),
    "cloudqueue_gcp + handler + token check code": (
        _APP
        + "import cloudqueue_gcp\n"
        "handler = cloudqueue_gcp.http_handler(app)\n"
        "from google.auth import jwt, crypt\n"
        "import google.auth.crypt._cryptography_rsa\n"),
    "google.cloud.tasks_v2": "from google.cloud import tasks_v2",
    "google.cloud.pubsub_v1": "from google.cloud import pubsub_v1",
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
    found = dict(rows)
    ours = found["cloudqueue_gcp + handler"] - found["pydantic BaseModel"]
    own = found["cloudqueue_gcp + handler"] - found["cloudqueue core + app + job"]
    auth = found["cloudqueue_gcp + handler + token check code"] - found["cloudqueue_gcp + handler"]
    print(f"  cloudqueue_gcp + handler over pydantic: {ours:.1f} ms (budget: 40 ms), of which "
          f"cloudqueue_gcp itself: {own:.1f} ms; the first token check adds {auth:.1f} ms")


if __name__ == "__main__":
    main()
