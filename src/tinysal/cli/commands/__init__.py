"""One module per ``tinysal`` verb, each with ``HELP``, ``FILE_ROLES`` (the arguments it reads, the files and the
folders it writes: checked by ``cli.common.check_file_roles`` before any work), ``add_arguments(parser)`` and
``run(args) -> exit code``. ``COMMANDS`` is their order in ``tinysal --help``."""

COMMANDS = (
    "export",
    "check-ops",
    "cost",
    "parity",
    "train",
    "sample",
    "plot-run",
    "calibrate",
    "roi-maps",
    "encode",
    "roi-eval",
    "crf-search",
    "auto-encode",
    "ladder",
    "validate-registry",
    "validate-model",
    "eval",
    "score",
    "batch",
    "report",
)
