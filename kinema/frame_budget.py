"""Whether a clip's frames fit in this machine's memory.

A clip is held whole as a (T, H, W, 3) uint8 array (a long chain's too, and the world's
renders), so a length typed by mistake (``--seconds 1e9``) must be refused up front with the
longest one that fits, not found out by the allocator hours in.
"""

from __future__ import annotations

import math
import os


def memory_bytes() -> int:
    """This machine's physical memory."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # no sysconf (Windows): assume 8 GiB
        return 8 * 2**30


def frames_over_budget(num_frames: int, width: int, height: int, fps: float) -> str | None:
    """What is wrong when the frames alone would take more than half the memory, else None."""
    frame_bytes, budget = width * height * 3, memory_bytes() // 2
    if num_frames * frame_bytes <= budget:
        return None
    most = math.floor((budget // frame_bytes - 1) / fps)  # down: the length named must fit
    return (
        f"{num_frames} frames at {width}x{height} need {num_frames * frame_bytes / 2**30:.1f} "
        f"GiB for the frames alone, more than half this machine's memory: ask for at most "
        f"{most} s at {fps:g} fps"
    )
