"""``make_store``: the stores of tests/store (memory, DynamoDB on moto, the Firestore emulator)."""

from tests.store.conftest import make_store

__all__ = ["make_store"]
