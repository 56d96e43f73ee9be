"""Writes kinema/eval/shapesbench_suite.json: the fixed ShapesBench prompt suite.

Run once; the JSON is the suite (checked in). Prompts are the world's canonical captions, so the
judge reads the expected scene from the prompt itself.
"""

import json
from pathlib import Path

from kinema.world.captions import canonical_caption
from kinema.world.spec import ObjectSpec as O
from kinema.world.spec import Scene as S

entries = []


def add(dims, scene, quick=False):
    entries.append(
        {
            "id": f"{dims[0]}-{sum(e['dimensions'][0] == dims[0] for e in entries):02d}",
            "prompt": canonical_caption(scene),
            "dimensions": list(dims),
            "quick": quick,
        }
    )


# colour: one object per colour, varied shapes and gentle motions
for k, (c, sh, m) in enumerate(
    [
        ("red", "circle", "still"),
        ("green", "square", "right"),
        ("blue", "triangle", "left"),
        ("yellow", "circle", "up"),
        ("white", "square", "still"),
        ("purple", "triangle", "down"),
        ("orange", "square", "left"),
        ("cyan", "circle", "right"),
    ]
):
    add(["color"], S((O(sh, c, "medium", m),), "black" if k % 2 else "gray"), quick=k in (0, 5))
# shape
for k, (sh, c, bg) in enumerate(
    [
        ("circle", "orange", "navy"),
        ("square", "red", "black"),
        ("triangle", "green", "gray"),
        ("circle", "white", "gradient"),
        ("square", "cyan", "checkered"),
        ("triangle", "yellow", "black"),
    ]
):
    add(["shape"], S((O(sh, c, "large", "still"),), bg), quick=k in (1, 2))
# direction, both speeds
for k, (m, sp, sh, c) in enumerate(
    [
        ("left", "slow", "circle", "red"),
        ("right", "slow", "square", "blue"),
        ("up", "slow", "triangle", "yellow"),
        ("down", "slow", "circle", "green"),
        ("diagonal", "slow", "square", "purple"),
        ("left", "fast", "square", "cyan"),
        ("right", "fast", "circle", "orange"),
        ("up", "fast", "circle", "white"),
        ("down", "fast", "triangle", "red"),
        ("diagonal", "fast", "circle", "blue"),
    ]
):
    add(["direction", "speed"], S((O(sh, c, "medium", m, sp),), "black"), quick=k in (0, 6))
# motion type: still, growing, shrinking
for k, (m, sp, sh, c) in enumerate(
    [
        ("growing", "slow", "circle", "green"),
        ("shrinking", "slow", "square", "orange"),
        ("growing", "fast", "square", "white"),
        ("shrinking", "fast", "circle", "purple"),
    ]
):
    add(
        ["motion_type"],
        S((O(sh, c, "medium" if m == "growing" else "large", m, sp),), "gray"),
        quick=k == 0,
    )
# size
for k, (sz, sh, c) in enumerate(
    [
        ("small", "circle", "yellow"),
        ("medium", "circle", "yellow"),
        ("large", "circle", "yellow"),
        ("small", "square", "blue"),
        ("medium", "triangle", "red"),
        ("large", "triangle", "cyan"),
    ]
):
    add(["size"], S((O(sh, c, sz, "still"),), "black"), quick=k in (0, 2))
# count: repeats and mixed objects
add(["count"], S((O("circle", "red", "small", "right"),) * 2, "black"), quick=True)
add(["count"], S((O("square", "blue", "small", "still"),) * 3, "gray"))
add(["count"], S((O("triangle", "yellow", "small", "left"),) * 2, "navy"))
add(
    ["count"],
    S((O("circle", "green", "medium", "up"), O("square", "white", "small", "still")), "black"),
    quick=True,
)
add(
    ["count", "color", "shape"],
    S(
        (
            O("circle", "red", "small", "right"),
            O("square", "blue", "small", "left"),
            O("triangle", "yellow", "small", "still"),
        ),
        "black",
    ),
)
add(["count"], S((O("circle", "cyan", "small", "still"),) * 3, "checkered"))
# background
for k, bg in enumerate(["black", "gray", "navy", "gradient", "checkered"]):
    add(["background"], S((O("circle", "white", "medium", "right"),), bg), quick=k in (3, 4))
# object permanence: fast horizontal movers pass behind the pillar
for k, (m, sh, c, sz) in enumerate(
    [
        ("right", "circle", "red", "small"),
        ("left", "square", "cyan", "small"),
        ("right", "triangle", "yellow", "medium"),
        ("left", "circle", "green", "medium"),
    ]
):
    add(["permanence"], S((O(sh, c, sz, m, "fast"),), "black", occluder=True), quick=k == 0)
# bounce physics
for k, (sh, c, sp, bg) in enumerate(
    [
        ("circle", "orange", "slow", "black"),
        ("circle", "blue", "fast", "gray"),
        ("square", "green", "slow", "navy"),
        ("triangle", "white", "fast", "black"),
    ]
):
    add(["bounce"], S((O(sh, c, "medium", "bouncing", sp),), bg), quick=k == 0)

out = Path(__file__).resolve().parents[1] / "kinema" / "eval" / "shapesbench_suite.json"
out.write_text(json.dumps({"version": 1, "prompts": entries}, indent=1) + "\n")
print(f"wrote {len(entries)} prompts ({sum(e['quick'] for e in entries)} quick) to {out}")
