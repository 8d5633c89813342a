"""What an encode keeps of its input besides the pictures: audio and subtitle streams (copied; audio re-encoded to
AAC only when the output container cannot hold it), the video's sample aspect ratio and colour tags, container
metadata (title, …) and chapters — as FFmpeg keeps them when it transcodes a file."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

from tinysal.errors import TinysalError
from tinysal.video.readers import ffmpeg_url


def _one_line(fn: Any) -> Any:
    """FFmpeg errors while keeping the other streams become one TinysalError line (with the way out)."""

    def wrapped(self: Passthrough, *a: Any) -> Any:
        import av

        try:
            return fn(self, *a)
        except av.error.FFmpegError as e:
            raise TinysalError(f"cannot keep the input's audio/subtitles ({e}); --no-audio drops audio") from None

    return wrapped


class Passthrough:
    """Reads the input container once more for everything but its video; ``attach`` copies the tags onto the new
    video stream and adds the other streams; ``mux_until(t)`` writes their packets up to time ``t`` (seconds), so
    they interleave with the video; ``finish`` writes the rest and reports what was kept."""

    def __init__(self, path: str | Path | None, keep_audio: bool = True) -> None:
        import av

        self.src: Any = None
        self.kept: dict[str, Any] = {"audio": [], "subtitles": [], "reencoded_audio": []}
        self._pairs: dict[int, tuple[Any, Any, bool]] = {}  # input stream index -> (in, out, re-encoded?)
        self._packets: Iterator[Any] | None = None
        self._next: Any = None
        self.keep_audio = keep_audio
        if path is None:
            return
        try:
            self.src = av.open(ffmpeg_url(path))
        except (av.error.FFmpegError, OSError):
            self.src = None  # not a container (raw YUV, Y4M): nothing to keep

    def video_tags(self) -> dict[str, Any]:
        if self.src is None or not self.src.streams.video:
            return {}
        cc = self.src.streams.video[0].codec_context
        tags = {k: getattr(cc, k, None) for k in ("color_primaries", "color_trc", "colorspace", "color_range")}
        tags["sample_aspect_ratio"] = cc.sample_aspect_ratio
        return {k: v for k, v in tags.items() if v}

    @_one_line
    def attach(self, out: Any, video: Any) -> None:
        """Before the first packet: tags onto ``video``, metadata and chapters onto ``out``, the other streams."""
        for k, v in self.video_tags().items():
            with contextlib.suppress(AttributeError, ValueError, TypeError):
                setattr(video.codec_context, k, v)
        if self.src is None:
            return
        out.metadata.update({k: v for k, v in self.src.metadata.items() if k.lower() not in ("encoder",)})
        chapters = self.src.chapters()
        if chapters:
            out.set_chapters(chapters)
            self.kept["chapters"] = len(chapters)
        wanted = list(self.src.streams.subtitles) + (list(self.src.streams.audio) if self.keep_audio else [])
        for s in wanted:
            kind = "audio" if s.type == "audio" else "subtitles"
            if s.codec_context.name in out.supported_codecs:
                o, enc = out.add_stream_from_template(s), False
            elif kind == "audio":  # e.g. Vorbis into .mp4: re-encoded, as FFmpeg would choose the container's codec
                # AAC where the container holds it; Opus in WebM (which holds no AAC), at 48 kHz (all Opus takes)
                aac = "aac" in out.supported_codecs
                o = out.add_stream("aac" if aac else "libopus",
                                   rate=(s.codec_context.sample_rate or 48000) if aac else 48000)  # fmt: skip
                # by channel count: a layout without a channel mask ("1 channels", from Matroska) opens no encoder
                o.layout = {1: "mono", 2: "stereo"}.get(s.codec_context.channels, s.codec_context.channels or 2)
                o.format = "fltp" if aac else "flt"  # the encoder's sample format (frames are resampled to it)
                o.codec_context.time_base = Fraction(1, o.codec_context.sample_rate)
                o.codec_context.open()  # now: the container header (written at the first video packet) needs it
                enc = True
                self.kept["reencoded_audio"].append(s.index)
                self.kept["audio_codec"] = o.codec_context.name
            else:
                self.kept.setdefault("dropped_subtitles", []).append(s.index)  # no such subtitles in this container
                continue
            o.metadata.update(s.metadata)
            self._pairs[s.index] = (s, o, enc)
            self.kept[kind].append(s.index)
        if self._pairs:
            self._packets = self.src.demux([s for s, _, _ in self._pairs.values()])

    def _pull(self) -> Any:
        if self._next is None and self._packets is not None:
            self._next = next(self._packets, None)
            if self._next is None:
                self._packets = None
        return self._next

    def _mux(self, out: Any, pkt: Any) -> None:
        s, o, enc = self._pairs[pkt.stream.index]
        if not enc:
            if pkt.dts is None:
                return  # demuxer flush packet
            pkt.stream = o
            out.mux(pkt)
            return
        for fr in s.codec_context.decode(pkt):
            fr.pts = None
            for p in o.encode(fr):
                out.mux(p)

    @_one_line
    def mux_until(self, out: Any, seconds: float) -> None:
        while (pkt := self._pull()) is not None:
            t = float(pkt.dts * pkt.time_base) if pkt.dts is not None and pkt.time_base else 0.0
            if t > seconds:
                return
            self._next = None
            self._mux(out, pkt)

    @_one_line
    def finish(self, out: Any, seconds: float) -> dict[str, Any]:
        """Everything up to the end of the video (streams longer than the encoded frames are cut there)."""
        self.mux_until(out, seconds)
        for _, o, enc in self._pairs.values():
            if enc:
                for p in o.encode(None):
                    out.mux(p)
        return self.kept

    def close(self) -> None:
        if self.src is not None:
            self.src.close()
            self.src = None
