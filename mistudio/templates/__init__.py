"""Training templates (Qt-free): built-in recipes, saved templates, import/export, last-used."""
