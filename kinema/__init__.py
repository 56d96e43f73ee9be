"""kinema: text to video. A latent diffusion transformer over spacetime patches, the Shapes world
to train and measure it, and the production pipeline around it."""

__version__ = "0.1.0"


def load(model="kinema-tiny", device="cpu", dtype=None, offload=False):
    """Load a text-to-video model (see kinema.api.load)."""
    from kinema.api import load as _load

    return _load(model, device, dtype, offload)
