"""Reading and writing videos and images as uint8 RGB numpy arrays."""

from kinema.io.images import ImageError, contact_sheet, load_image, save_png, spritesheet
from kinema.io.video import VideoError, h264_round_trip, read_video, write_video

__all__ = [
    "ImageError",
    "VideoError",
    "contact_sheet",
    "h264_round_trip",
    "load_image",
    "read_video",
    "save_png",
    "spritesheet",
    "write_video",
]
