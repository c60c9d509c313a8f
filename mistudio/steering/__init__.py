"""Steering: change a model's generation with SAE features (or raw directions) and measure
what changed. Qt-free; torch is imported only inside the functions that need it."""
