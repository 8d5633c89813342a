"""One batch job in its own process: ``python -m tinysal.batch.worker`` reads ``{"task", "options"}`` as JSON on
stdin and writes ``{"status", "result" | "error"}`` as JSON on stdout. A job that fails for a reason of its own
(bad input, FFmpeg error) exits 0 with status ``failed``; a worker that dies (killed, out of memory) leaves no
answer, which the runner retries. Each job in its own process: a crash or a leak never reaches the next job."""

from __future__ import annotations

import json
import sys
from typing import Any


def run_job(task: str, options: dict[str, Any]) -> dict[str, Any]:
    from tinysal.batch.tasks import run

    return run(task, options)


def main() -> int:
    import os

    from tinysal.errors import TinysalError, take_warnings
    from tinysal.video.ffmpeg import die_with_parent

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
