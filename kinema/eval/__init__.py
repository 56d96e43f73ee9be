"""Evaluation metrics for generated videos: reference-free quality and FVD."""
