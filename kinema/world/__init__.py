"""The Shapes world: procedural scenes with captions, rendered at any size, length and fps,
and a detector that reads them back (the ground truth for training and for ShapesBench)."""

from kinema.world.captions import canonical_caption, caption
from kinema.world.detect import Detection, detect
from kinema.world.parse import parse_caption
from kinema.world.render import render, render_times
from kinema.world.sampler import place, random_scene
from kinema.world.spec import ObjectSpec, Scene, WorldError

__all__ = [
    "Detection", "ObjectSpec", "Scene", "WorldError", "canonical_caption", "caption", "detect",
    "parse_caption", "place", "random_scene", "render", "render_times",
]  # fmt: skip
