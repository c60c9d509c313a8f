from mistudio.store.db import Store, new_id, now_iso

__all__ = ["Store", "new_id", "now_iso"]
