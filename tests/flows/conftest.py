"""``make_store``: the stores of tests/store (memory, DynamoDB on moto, the Firestore emulator);
and the Google components of tests/gcp (each started once a session, shared with tests/gcp)."""

from tests.gcp.conftest import cloudevent_function, emulator, http_function, issuer, project, tasks_server
from tests.store.conftest import make_store

__all__ = ["cloudevent_function", "emulator", "http_function", "issuer", "make_store", "project", "tasks_server"]
