"""Activation extraction and the on-disk activation-set format (Qt-free)."""
