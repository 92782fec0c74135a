"""Every store keeps flows' versioned documents the same way: a write of version N lands
only over version N - 1, so of racing writers exactly one wins each version."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from cloudqueue.store import Store

MakeStore = Callable[[], Store]
NOW = datetime.now(timezone.utc).replace(microsecond=0)
TTL = timedelta(hours=1)


def test_a_document_is_created_once_and_written_version_after_version(make_store: MakeStore) -> None:
    store = make_store()
    assert store.load("shop/flow/a", now=NOW) is None
    assert store.save("shop/flow/a", '{"n": 1}', version=1, expires_at=NOW + TTL, now=NOW)
    assert not store.save("shop/flow/a", '{"n": "again"}', version=1, expires_at=NOW + TTL, now=NOW)
    assert not store.save("shop/flow/a", '{"n": 3}', version=3, expires_at=NOW + TTL, now=NOW)
    assert store.save("shop/flow/a", '{"n": 2}', version=2, expires_at=NOW + TTL, now=NOW)
    document = store.load("shop/flow/a", now=NOW)
    assert document is not None and document.version == 2 and document.value == '{"n": 2}'
    assert document.expires_at == NOW + TTL


def test_a_lapsed_document_is_gone_and_can_be_created_again(make_store: MakeStore) -> None:
    store = make_store()
    assert store.save("shop/flow/b", "1", version=1, expires_at=NOW + TTL, now=NOW)
    later = NOW + TTL + timedelta(seconds=1)
    assert store.load("shop/flow/b", now=later) is None
    assert not store.save("shop/flow/b", "2", version=2, expires_at=later + TTL, now=later)
    assert store.save("shop/flow/b", "new", version=1, expires_at=later + TTL, now=later)


def test_racing_writers_of_one_version_have_exactly_one_winner(make_store: MakeStore) -> None:
    stores = [make_store() for _ in range(4)]
    stores[0].save("shop/flow/c", "0", version=1, expires_at=NOW + TTL, now=NOW)
    wins: list[int] = []
    barrier = threading.Barrier(len(stores))

    def write(number: int, store: Store) -> None:
        barrier.wait(timeout=30)
        for version in range(2, 8):
            if store.save("shop/flow/c", str(number), version=version, expires_at=NOW + TTL, now=NOW):
                wins.append(version)

    threads = [threading.Thread(target=write, args=(n, s)) for n, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sorted(wins) == list(range(2, 8))  # each version written once, by one writer
    document = stores[0].load("shop/flow/c", now=NOW)
    assert document is not None and document.version == 7


def test_deleting_a_flow_key_forgets_the_document(make_store: MakeStore) -> None:
    store = make_store()
    store.save("shop/flow/d", "1", version=1, expires_at=NOW + TTL, now=NOW)
    store.delete("shop/flow/d")
    assert store.load("shop/flow/d", now=NOW) is None
