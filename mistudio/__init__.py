"""MechInterp Studio: sparse-autoencoder interpretability on a local GPU or CPU."""

__version__ = "0.1.0"
APP_NAME = "mistudio"
APP_TITLE = "MechInterp Studio"
