"""The user's settings and secrets, as the services read them and the Settings dialog changes them."""

from __future__ import annotations

import os
from typing import Callable

from mistudio.errors import UserError
from mistudio.settings import HF_TOKEN, SecretStore, Settings, SettingsRepo


class SettingsService:
    def __init__(self, repo: SettingsRepo, secrets: SecretStore):
        self.repo = repo
        self.secrets = secrets
        self.current: Settings = repo.load()
        self._listeners: list[Callable[[Settings], None]] = []

    def on_change(self, fn: Callable[[Settings], None]) -> None:
        """Call ``fn(new_settings)`` after every saved change (the queue follows its limits)."""
        self._listeners.append(fn)

    def update(self, **changes) -> Settings:
        new = Settings(**{**self.current.__dict__, **changes})
        self.repo.save(new)
        self.current = new
        for fn in list(self._listeners):
            fn(new)
        return new

    @property
    def hf_token(self) -> str | None:
        return os.environ.get("HF_TOKEN") or self.secrets.get(HF_TOKEN)

    def set_hf_token(self, token: str | None) -> None:
        if token and not token.strip().startswith("hf_"):
            raise UserError("That does not look like a Hugging Face token (they start with 'hf_').",
                            hint="Copy it from https://huggingface.co/settings/tokens.")
        self.secrets.set(HF_TOKEN, token)
