"""Application services, one per area (explicit dependencies; see docs/DESIGN)."""
