"""2-D maps of an SAE's decoder directions (UMAP, t-SNE) and clustered correlation order."""
