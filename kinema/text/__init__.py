"""Text encoders: prompts -> per-token embeddings (B, L, D) and a mask (B, L)."""
