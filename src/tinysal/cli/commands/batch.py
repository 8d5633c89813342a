"""``tinysal batch``: score and encode a catalogue from a manifest, resumable, one process per job."""

from __future__ import annotations

import argparse
import sys

from tinysal.cli.args import int_at_least
from tinysal.errors import CheckFailed

HELP = ("run a manifest of score/encode/crf-search/auto-encode (and rung/shot) jobs on a local process pool or a Ray "
        "cluster (resumable; DIR/summary.csv)")
#: the arguments it reads, the files it writes, the folders it writes as a whole (common.check_file_roles)
FILE_ROLES = (("manifest",), ("events",), ())


def add_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("manifest", help="CSV or JSONL: id, task (score|encode|crf-search|rung) and the task's flags as "
                    "columns")  # fmt: skip
    sp.add_argument("--out", required=True, help="folder of the job records (DIR/jobs/<id>.json) and summary.csv")
    sp.add_argument("--engine", choices=["local", "ray"], default="local",
                    help="where jobs run: local worker processes (default) or Ray tasks (pip install 'tinysal[ray]')")
    sp.add_argument("--address", help="--engine ray: auto or [ray://]host:port of a running cluster (default: start "
                    "a local Ray)")  # fmt: skip
    sp.add_argument("--workers", type=int_at_least(0), default=0,
                    help="jobs at once (0 = as many as the cores hold; never more locally)")
    sp.add_argument("--threads", type=int_at_least(0), default=0,
                    help="threads per job: libvmaf, the model, the encoder (0 = cores / --workers locally, else 1)")
    sp.add_argument("--retries", type=int_at_least(0), default=1, help="retries of a job whose worker died")
    sp.add_argument("--force", action="store_true", help="redo every job, also those already done")
    sp.add_argument("--check", action="store_true", help="check the manifest (values, inputs, every path written) "
                    "and say how many jobs would run; run nothing, write nothing")  # fmt: skip
    sp.add_argument("--events", help="NDJSON events to this file, or - for stdout")
    sp.add_argument("--quiet", "-q", action="store_true")


def run(args: argparse.Namespace) -> int:
    from tinysal.batch import run as run_batch

    if args.check:
        from tinysal.batch.runner import check

        n, done = check(args.manifest, args.out, args.events, args.force)
        print(f"manifest ok: {n} jobs, {n - done} to run, {done} already done", file=sys.stdout)
        return 0
    rows = run_batch(args.manifest, args.out, args.engine, args.workers, args.retries, args.force, args.events,
                     progress=not args.quiet and sys.stderr.isatty(), address=args.address,
                     threads=args.threads)  # fmt: skip
    failed = [r for r in rows if r["status"] != "done"]
    for r in failed:
        print(f"{r['id']}: failed: {r['error']}", file=sys.stderr)
    out = sys.stderr if args.events == "-" else sys.stdout
    print(f"{len(rows) - len(failed)} of {len(rows)} jobs done; table in {args.out}/summary.csv", file=out)
    if failed:
        raise CheckFailed(f"{len(failed)} of {len(rows)} jobs failed (their records say why)")
    return 0
