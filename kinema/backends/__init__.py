"""Adapters for other model families behind kinema's Pipeline surface (diffusers pipelines)."""
