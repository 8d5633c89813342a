"""One batch job in its own process: ``python -m tinysal.batch.worker`` reads ``{"task", "options"}`` as JSON on
stdin and writes ``{"status", "result" | "error"}`` as JSON on stdout. A job that fails for a reason of its own
(bad input, FFmpeg error) exits 0 with status ``failed``; a worker that dies (killed, out of memory) leaves no
answer, which the runner retries. Each job in its own process: a crash or a leak never reaches the next job."""

from __future__ import annotations

import json
import sys
from typing import Any


def run_job(task: str, options: dict[str, Any]) -> dict[str, Any]:
    from tinysal.batch.manifest import TASKS

    cls = TASKS[task][0]
    opts = cls(**options)
    if task == "score":
        from tinysal.features.task import score

        res = score(opts)
        return {"result": res.result, "info": {k: v for k, v in res.info.items() if k != "notes"},
                "notes": res.info.get("notes", [])}  # fmt: skip
    if task == "crf-search":
        from tinysal.encode.search import crf_search

        doc = crf_search(opts, quiet=True)
        enc = doc.get("encode") or {}
        info = {"crf": doc["crf"], "roi_strength": doc["roi_strength"], "output": enc.get("output"),
                "bytes": enc.get("bytes"), "video_kbps": enc.get("video_kbps"), "total_kbps": enc.get("total_kbps"),
                "frames": enc.get("frames")}  # fmt: skip
        return {"result": doc, "info": info, "notes": []}
    if task == "rung":
        from tinysal.encode.ladder import run_rung

        point = run_rung(opts)
        info = {k: point[k] for k in ("frames", "video_kbps", "total_kbps", "bytes")}
        return {"result": point, "info": info, "notes": []}
    from tinysal.encode.encoder import encode

    info = encode(opts)
    return {"result": None, "info": info, "notes": info.pop("notes", [])}


def main() -> int:
    import os

    from tinysal.errors import TinysalError, take_warnings
    from tinysal.features.vmaf import die_with_parent

    if parent := os.environ.get("TINYSAL_BATCH_PARENT"):  # kill -9 of the batch (or its Ray worker) ends the job
        die_with_parent(int(parent))
    job = json.loads(sys.stdin.read())
    try:
        out = {"status": "done", **run_job(job["task"], job["options"])}
    except TinysalError as e:
        out = {"status": "failed", "error": str(e)}
    except MemoryError:
        out = {"status": "failed", "error": "out of memory"}
    except OSError as e:
        out = {"status": "failed", "error": f"{e.strerror or e}{': ' + str(e.filename) if e.filename else ''}"}
    take_warnings()
    sys.stdout.write(json.dumps(out, default=str))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
