"""An in-memory secret store with SecretStore's interface, for tests and throwaway studios."""

from __future__ import annotations


class MemorySecrets:
    backend = "memory (tests)"

    def __init__(self):
        self._values: dict[str, str] = {}

    def get(self, name: str) -> str | None:
        return self._values.get(name)

    def set(self, name: str, value: str | None) -> None:
        if value:
            self._values[name] = value.strip()
        else:
            self._values.pop(name, None)

    def delete(self, name: str) -> None:
        self._values.pop(name, None)
