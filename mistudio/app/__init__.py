"""Application services, one per area, each given its dependencies in its constructor (see
docs/architecture.md)."""
