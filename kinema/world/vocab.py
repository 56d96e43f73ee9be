"""What the Shapes world knows: shapes, colours, sizes, motions, speeds, backgrounds.

Every number that fixes how a word looks or moves lives here, so that the renderer, the caption
grammar and the detector agree by construction.
"""

from __future__ import annotations

SHAPES = ("circle", "square", "triangle")

# Bright, saturated object colours (RGB). Backgrounds and the occluder are all dark or muted, so
# an object pixel is always far from every background pixel in colour space.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (230, 40, 40),
    "green": (40, 200, 60),
    "blue": (50, 90, 245),
    "yellow": (245, 225, 40),
    "white": (240, 240, 240),
    "purple": (165, 60, 225),
    "orange": (250, 140, 25),
    "cyan": (40, 220, 230),
}

# Radius of the circle with the same area as the shape, as a fraction of the frame's short side.
# Shapes of one size have the same area, so size reads back from area alone.
SIZES: dict[str, float] = {"small": 0.07, "medium": 0.105, "large": 0.15}

DIRECTIONS: dict[str, tuple[float, float]] = {
    # unit (dx, dy) in image coordinates: y grows downwards
    "left": (-1.0, 0.0),
    "right": (1.0, 0.0),
    "up": (0.0, -1.0),
    "down": (0.0, 1.0),
    "diagonal": (0.7071067811865476, -0.7071067811865476),  # towards the upper right
}
MOTIONS = (*DIRECTIONS, "still", "bouncing", "growing", "shrinking")

# Linear speed in frame fractions per second; growth rate in log-radius per second.
SPEEDS: dict[str, float] = {"slow": 0.12, "fast": 0.26}
GROWTH_RATES: dict[str, float] = {"slow": 0.25, "fast": 0.5}
GROWTH_LIMITS = (0.4, 2.2)  # radius never leaves [0.4, 2.2] x its starting value

# Bouncing: gravity in frame heights per second squared, restitution of each floor contact,
# horizontal drift as a fraction of the linear speed.
GRAVITY = 2.5
RESTITUTION = 0.9
BOUNCE_DRIFT = 0.5

BACKGROUNDS = ("black", "gray", "navy", "gradient", "checkered")
BACKGROUND_COLORS: dict[str, tuple[int, int, int]] = {
    "black": (0, 0, 0),
    "gray": (88, 88, 88),
    "navy": (18, 26, 72),
}
GRADIENT_TOP = (44, 14, 62)  # dusk purple
GRADIENT_BOTTOM = (12, 44, 48)  # dark teal
CHECKER_DARK = (22, 22, 22)
CHECKER_LIGHT = (58, 58, 58)
CHECKER_CELL = 0.125  # fraction of the short side

CAMERAS = ("static", "pan-left", "pan-right")
PAN_SPEED = 0.08  # frame widths per second

OCCLUDER_COLOR = (112, 74, 42)  # a brown pillar
OCCLUDER_X = 0.5  # centre, in world frame widths
OCCLUDER_WIDTH = 0.14  # frame widths

MAX_OBJECTS = 3


def vocabulary() -> dict[str, tuple[str, ...]]:
    """Every word class and its canonical values, for error messages and documentation."""
    return {
        "shape": SHAPES,
        "color": tuple(COLORS),
        "size": tuple(SIZES),
        "motion": MOTIONS,
        "speed": tuple(SPEEDS),
        "background": BACKGROUNDS,
        "camera": CAMERAS,
    }
