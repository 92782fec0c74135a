"""Every benchmark against its named peers, one after the other, each printing its table.

    python -m bench                      # the default sizes (a few minutes)
    python -m bench --quick              # tiny sizes: checks that each one runs
    python -m bench --only lambda,sqs    # some of them: cold, lambda, sqs, memory, pubsub, store, claim, flows

Sizes and run counts can be set per benchmark (``--cold-runs``, ``--records``, ...);
each benchmark is also a module of its own (``python -m bench.cold_start --help``).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable

from . import (
    claim_check,
    cold_start,
    flows,
    lambda_overhead,
    memory_throughput,
    pubsub_throughput,
    sqs_enqueue,
    store_lambda,
)

NAMES = ("cold", "lambda", "sqs", "memory", "pubsub", "store", "claim", "flows")


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--only", default=",".join(NAMES),
                        help=f"comma-separated benchmarks to run, of {', '.join(NAMES)}")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes and single runs (numbers mean nothing; shows each one runs)")
    parser.add_argument("--cold-runs", type=int, help="fresh processes per cold-start row (default 10)")
    parser.add_argument("--records", type=int, help="records in the Lambda event (default 1000)")
    parser.add_argument("--lambda-runs", type=int, help="Lambda shim runs (default 41)")
    parser.add_argument("--messages", type=int, help="SQS messages per row per round (default 500)")
    parser.add_argument("--per-queue", type=int, help="SQS messages per fresh queue (default 10)")
    parser.add_argument("--sqs-runs", type=int, help="SQS rounds (default 5)")
    parser.add_argument("--jobs", type=int, help="memory backend jobs per run (default 10000)")
    parser.add_argument("--memory-runs", type=int, help="memory backend runs (default 5)")
    parser.add_argument("--store-records", type=int, help="records per event in the store benchmark (default 100)")
    parser.add_argument("--store-runs", type=int, help="store benchmark runs (default 9)")
    parser.add_argument("--flows", type=int, help="flows per run in the flows benchmark (default 200)")
    parser.add_argument("--flow-children", type=int, help="children a flow (default 10)")
    parser.add_argument("--flow-runs", type=int, help="flows benchmark runs (default 5)")
    args = parser.parse_args(argv)
    unknown = set(args.only.split(",")) - set(NAMES)
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(sorted(unknown))}; choose from {', '.join(NAMES)}")
    return args


def _options(**values: int | None) -> list[str]:
    """``--name value`` for each value that was given."""
    out: list[str] = []
    for name, value in values.items():
        if value is not None:
            out += [f"--{name.replace('_', '-')}", str(value)]
    return out


def plan(args: argparse.Namespace) -> list[tuple[str, Callable[[list[str]], None], list[str]]]:
    """Which benchmarks run, with which arguments."""
    quick = args.quick

    def pick(given: int | None, tiny: int) -> int | None:
        return given if given is not None else (tiny if quick else None)

    steps: list[tuple[str, Callable[[list[str]], None], list[str]]] = [
        ("cold", cold_start.main, _options(runs=pick(args.cold_runs, 1))),
        ("lambda", lambda_overhead.main,
         _options(records=pick(args.records, 20), runs=pick(args.lambda_runs, 1))),
        ("sqs", sqs_enqueue.main, _options(messages=pick(args.messages, 20),
                                           per_queue=pick(args.per_queue, 10),
                                           runs=pick(args.sqs_runs, 1))),
        ("memory", memory_throughput.main,
         _options(jobs=pick(args.jobs, 20), runs=pick(args.memory_runs, 1))),
        ("pubsub", pubsub_throughput.main, ["--jobs", "20", "--runs", "1"] if quick else []),
        ("store", store_lambda.main,
         _options(records=pick(args.store_records, 5), runs=pick(args.store_runs, 1))),
        ("claim", claim_check.main, ["--size", "0.5", "--runs", "1"] if quick else []),
        ("flows", flows.main, _options(flows=pick(args.flows, 5), children=pick(args.flow_children, 3),
                                       runs=pick(args.flow_runs, 1))),
    ]
    chosen = args.only.split(",")
    return [step for step in steps if step[0] in chosen]


def main(argv: list[str] | None = None) -> None:
    given = sys.argv[1:] if argv is None else argv
    args = arguments(given)
    print(f"cloudqueue benchmarks: Python {platform.python_version()} on {platform.machine()} "
          f"{platform.system()}, {os.cpu_count()} CPUs; python -m bench {' '.join(given)}".rstrip())
    for name, run, options in plan(args):
        start = time.perf_counter()
        run(options)
        print(f"  [{name}: {time.perf_counter() - start:.0f} s]")


if __name__ == "__main__":
    main()
