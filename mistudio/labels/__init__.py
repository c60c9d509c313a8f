"""Labels, notes, favourites and lists of SAE features, keyed by (SAE, feature index)."""
