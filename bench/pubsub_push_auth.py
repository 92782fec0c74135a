"""Push-token checks under attack: a valid token's verification while forged ones arrive.

    python -m bench.pubsub_push_auth [--checks 200] [--attackers 4]

A local OIDC issuer serves the certificate map on loopback (as tests/gcp does). The row
"quiet" verifies valid tokens alone; "under attack" verifies them while ``--attackers``
threads send tokens naming unknown key ids (each a fresh one, as an attacker would) as
fast as they can. Each of those once made the verifier refetch the certificates under its
one lock; now an unknown key id refetches at most once a minute and is refused from a
negative cache.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

from ._table import print_table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.pubsub_push_auth")
    parser.add_argument("--checks", type=int, default=200, help="valid tokens verified per row")
    parser.add_argument("--attackers", type=int, default=4, help="threads sending forged tokens")
    args = parser.parse_args(argv)

    from cloudqueue_gcp import AuthError, PushAuth

    from tests.gcp.oidc_issuer import OidcIssuer

    issuer = OidcIssuer()
    audience, account = "https://fn.example/", "invoker@p.iam.gserviceaccount.com"
    try:
        auth = PushAuth.of(audience, account, certs_url=issuer.certs_url)
        valid = f"Bearer {issuer.token(audience, account)}"
        forged = [f"Bearer {issuer.unknown_key_token(audience, account)}" for _ in range(50)]
        auth.verify(valid)  # certificates fetched once

        def measure() -> float:
            times = []
            for _ in range(args.checks):
                start = time.perf_counter()
                auth.verify(valid)
                times.append(time.perf_counter() - start)
            return statistics.median(times) * 1000

        quiet = measure()
        stop = threading.Event()
        refused = [0]

        def attack(n: int) -> None:
            while not stop.is_set():
                try:
                    auth.verify(forged[(refused[0] + n) % len(forged)])
                except AuthError:
                    refused[0] += 1

        fetches = issuer.fetches
        threads = [threading.Thread(target=attack, args=(n,), daemon=True) for n in range(args.attackers)]
        for thread in threads:
            thread.start()
        attacked = measure()
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        print_table(f"OIDC verification of a valid push token, median ms of {args.checks} "
                    f"({args.attackers} threads sending unknown-kid tokens: {refused[0]} refused, "
                    f"{issuer.fetches - fetches} certificate fetches)", "ms",
                    [("quiet", quiet), ("under attack", attacked)], higher_is_better=False, against="quiet")
    finally:
        issuer.close()


if __name__ == "__main__":
    main()
