"""Application services: one class per area, given its dependencies explicitly."""
