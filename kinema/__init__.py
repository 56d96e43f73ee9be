"""kinema: text to video. A latent diffusion transformer over spacetime patches, the Shapes world
to train and measure it, and the production pipeline around it."""

__version__ = "0.1.0"
