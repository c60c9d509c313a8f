"""Application services, one per area (see docs/architecture.md)."""
