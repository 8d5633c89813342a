"""Catalogue runs: ``tinysal batch MANIFEST --out DIR``, one job per manifest row, resumable and failure-isolated
(issue 24). ``run(manifest, out_dir)`` is the Python API."""

from tinysal.batch.runner import run

__all__ = ["run"]
