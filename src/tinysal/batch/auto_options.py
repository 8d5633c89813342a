"""The options of ``tinysal auto-encode`` (and of the batch task ``auto-encode``); the work is batch.auto_encode."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from tinysal.encode.search import CrfSearchOptions, SearchTargets
from tinysal.errors import TinysalError
from tinysal.video.readers import VideoInput

DEFAULT_FPS = 25.0


@dataclass(kw_only=True)
class AutoEncodeOptions(SearchTargets, VideoInput):
    """The ``auto-encode`` command's (and batch task's) options; the names are the command's flags."""

    output: str
    per_shot: bool = False
    min_shot_seconds: float = 1.0  # shots shorter than this are merged into a neighbour
    scene_threshold: float = 27.0  # ContentDetector's threshold
    max_kbps: float | None = None  # budget mode: the title's video bitrate (per_shot)
    fps: float | None = None
    encoder_args: str = ""
    model_path: str | None = None
    jobs: int = 1  # shots at once (the command's default: as many as the cores allow)
    engine: str = "local"
    address: str | None = None
    retries: int = 1
    work_dir: str | None = None
    out_json: str | None = None
    events: str | None = None
    overwrite: bool = False
    no_audio: bool = False
    threads: int = 0
    frame_cnt: int = 0

    def search_options(self, **kw: Any) -> CrfSearchOptions:
        """crf-search's options for this title (the whole-title mode's search, and the checks it shares)."""
        fields = ("input", "width", "height", "pixel_format", "bitdepth", "fps", "encoder_args", "model_path",
                  "overwrite", "threads", "frame_cnt")  # fmt: skip
        return CrfSearchOptions(**{f: getattr(self, f) for f in fields}, **self.target_fields(), **kw)

    def check(self, files: bool = True) -> None:
        """Refuse, before any work, what cannot run (one line each)."""
        self.search_options(encode=self.output).check(files)  # the search's checks: targets, codec, frames, fps
        if self.engine not in ("local", "ray"):
            raise TinysalError(f"--engine must be local or ray, got {self.engine!r}")
        if self.jobs < 0 or self.retries < 0:
            raise TinysalError("--jobs and --retries must be at least 0")
        if not (math.isfinite(self.min_shot_seconds) and 0 <= self.min_shot_seconds <= 600):
            raise TinysalError(f"--min-shot-seconds must be 0..600, got {self.min_shot_seconds:g}")
        if not (math.isfinite(self.scene_threshold) and 0 < self.scene_threshold <= 255):
            raise TinysalError(f"--scene-threshold must be above 0 and at most 255, got {self.scene_threshold:g}")
        if self.max_kbps is not None:
            if not self.per_shot:
                raise TinysalError("--max-kbps shares a bitrate between shots: it needs --per-shot")
            if not (math.isfinite(self.max_kbps) and self.max_kbps > 0):
                raise TinysalError(f"--max-kbps must be above 0, got {self.max_kbps:g}")
        if (self.work_dir or self.jobs > 1 or self.engine != "local") and not self.per_shot:
            raise TinysalError("--work-dir, --jobs and --engine are for --per-shot (shots as batch jobs)")
