"""Application services: one class per area, built by the Studio facade with explicit
dependencies."""
