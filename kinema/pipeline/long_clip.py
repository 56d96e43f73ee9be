"""Long clips as chains of overlapping windows (work in progress: filled in by the pipeline).

Each window after the first is conditioned on the last OVERLAP_LATENTS + 1 latent frames
(1 + 4 * OVERLAP_LATENTS pixel frames) of the clip so far."""

DEFAULT_WINDOW_FRAMES = 17
DEFAULT_OVERLAP_LATENTS = 2
