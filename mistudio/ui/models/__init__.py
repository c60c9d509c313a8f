"""The Models tab: model cards, download/import dialogs, inspector, extraction, activation sets."""
