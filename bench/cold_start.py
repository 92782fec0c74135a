"""Cold start: wall time of fresh interpreters, net of a bare one, and the cloud modules each loads.

Each row is the median of ``--runs`` fresh ``python -c`` processes minus the median of a
bare interpreter; the runs are interleaved (one of each program per round) so load on
the machine hits every row alike. Floor: pydantic's BaseModel (every job needs it).
Peers: Powertools' batch utility with its pydantic parser (what a Lambda built on it
imports), bare ``import boto3``, and boto3 with an SQS client (what a shim that makes its
client up front pays). With ``cloudqueue_gcp`` installed: its HTTP handler (OIDC
verification on, as deployed), the same plus the code its first token check loads
(google-auth's JWT code and cryptography), and the Cloud Tasks and Pub/Sub client
libraries (what a shim that imports them up front pays).

A second, untimed run of each program lists the boto3/botocore/s3transfer, google.*,
grpc and opentelemetry modules it left in ``sys.modules`` beyond those a bare interpreter
has (a namespace package's .pth file may load ``google`` at start-up); ``import
cloudqueue``, an app and the Lambda consume path must load none of them (OpenTelemetry
only with ``cloudqueue.otel``, which an app imports itself).

    python -m bench.cold_start [--runs 10] [--importtime 0]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from functools import partial

from ._table import interleaved_medians, print_table

_APP = (
    "from pydantic import BaseModel\n"
    "import cloudqueue as cq\n"
    "class Receipt(BaseModel):\n    to: str\n    order_id: str\n"
    "app = cq.App('shop', backend={url!r})\n"
    "@app.job\n"
    "def send_receipt(payload: Receipt) -> None: ...\n")

_GCP_URL = ("cloudtasks://acme/europe-west1/jobs?target=https://fn.example/"
            "&service_account=invoker@acme.iam.gserviceaccount.com")

FLOOR = "pydantic BaseModel"
LAMBDA = "cloudqueue_aws + Lambda handler"
GCP = "cloudqueue_gcp + HTTP handler"
GCP_TOKEN = "cloudqueue_gcp + handler + token check code"
CORE = "cloudqueue core + app + job"

_PROGRAMS = {
    "bare interpreter": "pass",
    FLOOR: "from pydantic import BaseModel\nclass Receipt(BaseModel):\n    to: str\n    order_id: str\n",
    "import cloudqueue": "import cloudqueue\n",
    CORE: _APP.format(url="memory://"),
    LAMBDA: (_APP.format(url="sqs://receipts?region=eu-west-1")
             + "import cloudqueue_aws\nhandler = cloudqueue_aws.lambda_handler(app)\n"),
    GCP: (_APP.format(url=_GCP_URL)
          + "import cloudqueue_gcp\nhandler = cloudqueue_gcp.http_handler(app)\n"),
    "Powertools batch + parser model": (
        "from pydantic import BaseModel, Json\n"
        "from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, "
        "process_partial_response\n"
        "from aws_lambda_powertools.utilities.parser.models import SqsRecordModel\n"
        "class Receipt(BaseModel):\n    to: str\n    order_id: str\n"
        "class Body(BaseModel):\n    id: str\n    type: str\n    data: Receipt\n"
        "class ReceiptRecord(SqsRecordModel):\n    body: Json[Body]\n"
        "processor = BatchProcessor(event_type=EventType.SQS, model=ReceiptRecord)\n"),
    GCP_TOKEN: (_APP.format(url=_GCP_URL)
                + "import cloudqueue_gcp\nhandler = cloudqueue_gcp.http_handler(app)\n"
                "from google.auth import jwt, crypt\nimport google.auth.crypt._cryptography_rsa\n"),
    "import boto3": "import boto3\n",
    "boto3 + SQS client": "import boto3\nboto3.client('sqs', region_name='eu-west-1')\n",
    "google.cloud.tasks_v2": "from google.cloud import tasks_v2\n",
    "google.cloud.pubsub_v1": "from google.cloud import pubsub_v1\n",
}

#: rows that need the Google side installed
_GOOGLE_ROWS = (GCP, GCP_TOKEN, "google.cloud.tasks_v2", "google.cloud.pubsub_v1")

#: paths that must load neither boto3, any google.* module nor opentelemetry
CLOUD_FREE = ("import cloudqueue", CORE, LAMBDA)
#: a Google push shim consumes without the Cloud Tasks or Pub/Sub client libraries (or grpc)
GOOGLE_CLIENT_FREE = (GCP, GCP_TOKEN)
_GOOGLE_CLIENTS = ("google.cloud.tasks", "google.cloud.pubsub", "grpc", "boto3", "botocore")

_LIST_MODULES = (
    "\nimport json as _j, sys as _s\n"
    "print(_j.dumps(sorted(m for m in _s.modules if m.split('.')[0] in "
    "('boto3', 'botocore', 's3transfer', 'google', 'grpc', 'opentelemetry'))))\n")


def programs() -> dict[str, str]:
    """The programs to time; the Google rows only when cloudqueue_gcp is installed."""
    have_gcp = importlib.util.find_spec("cloudqueue_gcp") is not None
    return {name: code for name, code in _PROGRAMS.items() if have_gcp or name not in _GOOGLE_ROWS}


def child_env() -> dict[str, str]:
    """The environment of every fresh interpreter: bytecode cached, in one place for all.

    Installed peers come with .pyc files while a source checkout may have none (and
    ``PYTHONDONTWRITEBYTECODE`` may forbid writing them), which would charge cloudqueue
    for compiling itself on every start. A cache prefix outside the tree gives every
    program its .pyc files after the first, untimed run, as a deployed package has.
    """
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = os.path.join(tempfile.gettempdir(), "cloudqueue-bench-pycache")
    return env


_ENV = child_env()


def wall(program: str) -> float:
    """Seconds a fresh interpreter takes to run ``program`` and exit."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", program], check=True, stdout=subprocess.DEVNULL, env=_ENV)
    return time.perf_counter() - start


def cloud_modules(program: str) -> list[str]:
    """The boto*/google*/grpc/opentelemetry modules ``program`` leaves loaded."""
    out = subprocess.run([sys.executable, "-c", program + _LIST_MODULES], check=True,
                         capture_output=True, text=True, env=_ENV).stdout
    names: list[str] = json.loads(out.strip().splitlines()[-1])
    return names


def family(module: str) -> str:
    """A module's family for the summary: ``botocore``, ``google.auth``, ``google.cloud.tasks_v2``."""
    parts = module.split(".")
    if parts[0] == "google":
        return ".".join(parts[:3] if len(parts) > 2 and parts[1] == "cloud" else parts[:2])
    return parts[0]


def describe(modules: list[str]) -> str:
    if not modules:
        return "none"
    counts = Counter(family(m) for m in modules)
    return ", ".join(f"{name} ({n})" for name, n in sorted(counts.items()))


def import_times(program: str) -> dict[str, float]:
    """Each module ``program`` imports, with its own import time in ms (``-X importtime``)."""
    err = subprocess.run([sys.executable, "-X", "importtime", "-c", program], check=True,
                         capture_output=True, text=True, env=_ENV).stderr
    found: dict[str, float] = {}
    for line in err.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        own, _, name = (part.strip() for part in line[len("import time:"):].split("|"))
        if own.isdigit():
            found[name] = found.get(name, 0.0) + int(own) / 1000
    return found


def beyond_floor(progs: dict[str, str], name: str, top: int) -> list[tuple[str, float]]:
    """The ``top`` modules by own import time that path ``name`` loads and the floor does not."""
    floor = import_times(progs[FLOOR])
    mine = import_times(progs[name])
    extra = {module: ms for module, ms in mine.items() if module not in floor}
    return sorted(extra.items(), key=lambda item: -item[1])[:top]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="fresh processes per program (median)")
    parser.add_argument("--importtime", type=int, default=0, metavar="N",
                        help="also list the N slowest modules each cloudqueue path loads beyond the floor")
    args = parser.parse_args(argv)
    progs = programs()
    # the untimed listing run also warms the file system cache and writes .pyc files
    loaded = {name: cloud_modules(code) for name, code in progs.items()}
    for code in progs.values():  # a second pass: every module now starts from its .pyc
        wall(code)
    at_start = set(loaded["bare interpreter"])
    loaded = {name: [m for m in modules if m not in at_start] for name, modules in loaded.items()}
    medians = dict(interleaved_medians(args.runs, {name: partial(wall, code)
                                                   for name, code in progs.items()}))
    bare = medians.pop("bare interpreter")
    rows = [(name, (value - bare) * 1000) for name, value in medians.items()]
    print_table(f"Cold start, median of {args.runs} fresh processes, net of a bare interpreter "
                f"({bare * 1000:.1f} ms)", "ms", rows, higher_is_better=False, against=FLOOR)
    found = dict(rows)
    for name in (LAMBDA, GCP):
        if name in found:
            print(f"  {name} over pydantic: {found[name] - found[FLOOR]:.1f} ms (budget: 40 ms), "
                  f"of which the adapter itself: {found[name] - found[CORE]:.1f} ms")
    if GCP_TOKEN in found:
        print(f"  the first token check adds {found[GCP_TOKEN] - found[GCP]:.1f} ms")
    print("\n  cloud SDK modules loaded beyond a bare interpreter (boto3/botocore/s3transfer, "
          "google.*, grpc, opentelemetry):")
    width = max(len(name) for name in progs)
    for name in progs:
        if name != "bare interpreter":
            print(f"  {name:<{width}}  {describe(loaded[name])}")
    leaks = {name: loaded[name] for name in CLOUD_FREE if loaded.get(name)}
    leaks.update({name: [m for m in loaded[name] if m.startswith(_GOOGLE_CLIENTS)]
                  for name in GOOGLE_CLIENT_FREE
                  if name in loaded and any(m.startswith(_GOOGLE_CLIENTS) for m in loaded[name])})
    if args.importtime:
        print(f"\n  modules loaded beyond the floor ({FLOOR}), slowest first (own ms, one -X importtime run):")
        for name in (CORE, LAMBDA, GCP):
            if name in progs:
                slowest = ", ".join(f"{m} {ms:.1f}" for m, ms in beyond_floor(progs, name, args.importtime))
                print(f"  {name}: {slowest}")
    if leaks:
        raise SystemExit(f"cloud SDK modules loaded on a path that must load none: {leaks}")


if __name__ == "__main__":
    main()
