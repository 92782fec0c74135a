"""Every store keeps the same promises: one body, run against memory, DynamoDB and Firestore."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from cloudqueue.store import Claim, Status, Store

MakeStore = Callable[[], Store]
NOW = datetime.now(timezone.utc).replace(microsecond=0)
LEASE = timedelta(seconds=30)
TTL = timedelta(hours=1)


def _claim(store: Store, key: str, token: str, now: datetime = NOW, lease: timedelta = LEASE) -> Claim:
    return store.claim(key, token=token, now=now, lease_until=now + lease, expires_at=now + TTL,
                       job_type="charge", job_id="job-1")


def test_the_first_claim_wins_and_the_second_sees_it_in_progress(make_store: MakeStore) -> None:
    store = make_store()
    first = _claim(store, "shop/key/a", "t1")
    assert first.granted and first.record.runs == 1 and first.record.status is Status.IN_PROGRESS
    second = _claim(store, "shop/key/a", "t2")
    assert not second.granted
    assert second.record.token == "t1" and second.record.lease_until == NOW + LEASE
    assert second.record.job_type == "charge" and second.record.job_id == "job-1"


def test_a_completed_key_refuses_claims_and_keeps_its_value(make_store: MakeStore) -> None:
    store = make_store()
    _claim(store, "shop/key/b", "t1")
    assert store.complete("shop/key/b", token="t1", now=NOW, expires_at=NOW + TTL, value='{"total": 3}')
    refused = _claim(store, "shop/key/b", "t2", now=NOW + timedelta(minutes=5))
    assert not refused.granted and refused.record.status is Status.COMPLETED
    record = store.get("shop/key/b", now=NOW)
    assert record is not None and record.result == {"total": 3} and record.completed_at == NOW


def test_a_lapsed_lease_can_be_claimed_and_counts_a_run(make_store: MakeStore) -> None:
    store = make_store()
    _claim(store, "shop/key/c", "t1")
    later = NOW + LEASE + timedelta(seconds=1)
    taken = _claim(store, "shop/key/c", "t2", now=later)
    assert taken.granted and taken.record.runs == 2
    # the first holder lost it: none of its writes land
    assert not store.extend("shop/key/c", token="t1", lease_until=later + LEASE)
    assert not store.complete("shop/key/c", token="t1", now=later, expires_at=later + TTL)
    assert not store.release("shop/key/c", token="t1")
    assert store.get("shop/key/c", now=later).token == "t2"  # type: ignore[union-attr]


def test_extend_moves_the_lease(make_store: MakeStore) -> None:
    store = make_store()
    _claim(store, "shop/key/d", "t1")
    assert store.extend("shop/key/d", token="t1", lease_until=NOW + timedelta(minutes=5))
    still = _claim(store, "shop/key/d", "t2", now=NOW + LEASE + timedelta(seconds=1))
    assert not still.granted


def test_release_keeps_the_run_count_and_forget_starts_over(make_store: MakeStore) -> None:
    store = make_store()
    _claim(store, "shop/key/e", "t1")
    assert store.release("shop/key/e", token="t1")
    assert store.get("shop/key/e", now=NOW).status is Status.RELEASED  # type: ignore[union-attr]
    again = _claim(store, "shop/key/e", "t2")
    assert again.granted and again.record.runs == 2
    assert store.release("shop/key/e", token="t2", forget=True)
    assert store.get("shop/key/e", now=NOW) is None
    assert _claim(store, "shop/key/e", "t3").record.runs == 1


def test_a_record_past_its_ttl_is_gone(make_store: MakeStore) -> None:
    store = make_store()
    _claim(store, "shop/key/f", "t1")
    store.complete("shop/key/f", token="t1", now=NOW, expires_at=NOW + TTL)
    past = NOW + TTL + timedelta(seconds=1)
    assert store.get("shop/key/f", now=past) is None
    fresh = _claim(store, "shop/key/f", "t2", now=past)
    assert fresh.granted and fresh.record.runs == 1


def test_keys_with_any_characters_are_kept_apart(make_store: MakeStore) -> None:
    store = make_store()
    keys = ["shop/key/a b", "shop/key/a%20b", "shop/key/ä/ö", "shop/id/0123"]
    for n, key in enumerate(keys):
        assert _claim(store, key, f"t{n}").granted
    for n, key in enumerate(keys):
        assert store.get(key, now=NOW).token == f"t{n}"  # type: ignore[union-attr]
    store.delete(keys[0])
    assert store.get(keys[0], now=NOW) is None


def test_consumers_racing_on_a_key_exactly_one_claims(make_store: MakeStore) -> None:
    racers = 4
    stores = [make_store() for _ in range(racers)]  # a client each, as separate processes have
    keys = [f"shop/key/race-{n}" for n in range(12)]
    wins: dict[str, list[int]] = {key: [] for key in keys}
    errors: list[BaseException] = []
    start = threading.Barrier(racers)

    def race(n: int) -> None:
        try:
            start.wait(timeout=30)
            for key in keys:
                if _claim(stores[n], key, f"racer-{n}").granted:
                    wins[key].append(n)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=race, args=(n,)) for n in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert all(len(winners) == 1 for winners in wins.values()), wins
    for key, [winner] in wins.items():
        assert stores[0].get(key, now=NOW).token == f"racer-{winner}"  # type: ignore[union-attr]
