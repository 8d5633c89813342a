"""Video in: readers for raw planar YUV, Y4M and anything FFmpeg decodes (``readers``), and YCbCr↔RGB
(``colour``)."""

from tinysal.video.readers import (
    AvReader,
    RawYuvReader,
    Y4mReader,
    YuvFrame,
    open_video,
    parse_pix_fmt,
    resolve_bitdepth,
)

__all__ = ["AvReader", "RawYuvReader", "Y4mReader", "YuvFrame", "open_video", "parse_pix_fmt", "resolve_bitdepth"]
