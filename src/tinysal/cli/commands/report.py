"""``tinysal report``: one self-contained HTML page over a batch's records, a work dir, or result documents."""

from __future__ import annotations

import argparse
import os

from tinysal.cli.args import int_at_least

HELP = "one self-contained HTML page (sortable table, per-title curves, contact sheets) over a batch's --out folder"
#: the arguments it reads, the files it writes, the folders it writes as a whole (common.check_file_roles)
FILE_ROLES = (("paths",), ("output",), ())


def add_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("paths", nargs="+", metavar="DIR|JSON",
                    help="a tinysal batch --out folder, an auto-encode or ladder --work-dir, or crf-search / "
                    "auto-encode / ladder --out-json documents")
    sp.add_argument("-o", "--output", help="the page (default: report.html in the first folder given)")
    sp.add_argument("--title", help="the page's title")
    sp.add_argument("--contact-sheets", type=int_at_least(0), default=12,
                    help="contact sheets of the lowest-VMAF frames for this many score jobs, the worst first "
                    "(decodes their frames; default 12, 0: none)")
    sp.add_argument("--quiet", "-q", action="store_true")


def run(args: argparse.Namespace) -> int:
    from tinysal.batch.report import report

    out = args.output
    if out is None:
        first = args.paths[0]
        out = os.path.join(first if os.path.isdir(first) else os.path.dirname(first) or ".", "report.html")
    res = report(args.paths, out, args.title, args.contact_sheets, args.quiet)
    print(f"wrote {res['output']}: {res['jobs']} jobs, {res['contact_sheets']} contact sheets"
          + (f"; {res['problems']} files could not be reported (listed on the page)" if res["problems"] else ""))
    return 0
