"""Language models: sources (Hub, local folder, GGUF), loading, inspection, hook points (Qt-free)."""
