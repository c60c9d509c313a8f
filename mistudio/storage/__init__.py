"""Storage management: disk use of the data folder, orphans, database backups (Qt-free)."""
