"""Every store keeps flows' versioned documents the same way: a write of version N lands
only over version N - 1, so of racing writers exactly one wins each version."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from pydantic import BaseModel

import cloudqueue as cq
from cloudqueue.flows import FlowStep
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



class Part(BaseModel):
    n: int


def test_children_finishing_at_once_send_the_parent_once_on_every_store(make_store: MakeStore) -> None:
    children = 8
    sent: list[str] = []

    class Count(cq.Middleware):
        def enqueue(self, messages: Any, call_next: Any) -> list[str]:
            sent.extend(m.job_type for m in messages)
            return call_next(messages)

    def consumer(backend: Any = "memory://") -> cq.App:  # one process of many: its own app and client
        app = cq.App("race", backend=backend, store=make_store(), middleware=[Count()])

        @app.job
        def part(payload: Part) -> None: ...

        @app.job
        def whole(payload: Part) -> None: ...

        return app

    producer = consumer()
    flow_id = producer.flow(producer.get_job("whole").message(Part(n=0)),
                            children=[producer.get_job("part").message(Part(n=i)) for i in range(children)])
    assert sent == ["part"] * children
    steps = [FlowStep(consumer(producer.backend)) for _ in range(children)]
    barrier = threading.Barrier(children)

    def finish(index: int) -> None:
        barrier.wait(timeout=30)
        steps[index].finish(flow_id, index, ok=True, value={"n": index})

    threads = [threading.Thread(target=finish, args=(i,)) for i in range(children)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    flow = producer.get_flow(flow_id)
    assert flow.status == "parent_enqueued"
    assert flow.results == [{"n": i} for i in range(children)]
    assert sent == ["part"] * children + ["whole"]  # one consumer, and only one, sent the parent
    for step in steps:
        step.app.close()
    producer.close()


def test_a_set_counts_each_member_once(make_store: MakeStore) -> None:
    store = make_store()
    assert store.members("shop/flowends/s", now=NOW) == frozenset()
    assert store.add_member("shop/flowends/s", 3, expires_at=NOW + TTL, now=NOW) == 1
    assert store.add_member("shop/flowends/s", 0, expires_at=NOW + TTL, now=NOW) == 2
    assert store.add_member("shop/flowends/s", 3, expires_at=NOW + TTL, now=NOW) == 2  # again: no change
    assert store.members("shop/flowends/s", now=NOW) == frozenset({0, 3})
    assert store.members("shop/flowends/s", now=NOW + TTL + timedelta(seconds=1)) == frozenset()
    # a set is not a document: flows' listing (scan) and load never see it
    assert store.load("shop/flowends/s", now=NOW) is None


def test_racing_members_end_with_every_member_and_someone_sees_the_whole_set(make_store: MakeStore) -> None:
    stores = [make_store() for _ in range(4)]
    sizes: list[int] = []
    barrier = threading.Barrier(len(stores))

    def add(number: int, store: Store) -> None:
        barrier.wait(timeout=30)
        for member in range(number, 24, len(stores)):
            sizes.append(store.add_member("shop/flowends/r", member, expires_at=NOW + TTL, now=NOW))

    threads = [threading.Thread(target=add, args=(n, s)) for n, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(sizes) == 24 and max(sizes) == 24
    assert stores[0].members("shop/flowends/r", now=NOW) == frozenset(range(24))


def test_load_many_returns_the_live_documents_of_the_keys_asked(make_store: MakeStore) -> None:
    store = make_store()
    keys = [f"shop/flowend/m/{i}" for i in range(130)]  # more than one DynamoDB batch
    for i, key in enumerate(keys):
        if i % 3:
            assert store.save(key, str(i), version=1, expires_at=NOW + TTL, now=NOW)
    found = store.load_many([*keys, "shop/flowend/m/none"], now=NOW)
    assert sorted(found) == sorted(k for i, k in enumerate(keys) if i % 3)
    assert all(found[k].value == k.rsplit("/", 1)[1] for k in found)
    assert store.load_many(keys, now=NOW + TTL + timedelta(seconds=1)) == {}
