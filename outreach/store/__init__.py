"""The store: tables, the database engine and its migrations, the ledger's statements, the
instance lock."""

from outreach.store.database import Store, in_chunks, open_store

__all__ = ["Store", "in_chunks", "open_store"]
