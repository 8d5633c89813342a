"""Command lines: ``tinysal`` (``main``) and ``vmaf`` (``vmaf``), thin layers over the package's functions."""
