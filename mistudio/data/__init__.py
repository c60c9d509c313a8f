"""Datasets: sources, tokenization, statistics (Qt-free)."""
