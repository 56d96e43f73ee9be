"""Converters from other model families\x27 checkpoints into kinema\x27s classes."""
