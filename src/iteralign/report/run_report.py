"""`iteralign report`: read a run, draw its plots, write report.html and report.md.

In: a run directory and an output folder (default: the run directory). Out: the two files, each
written atomically, and their paths. Everything is read and rendered before anything is written,
so a folder that is not a run (RunDirError) leaves nothing behind, not even the output folder.
"""
from __future__ import annotations

import logging
from pathlib import Path

from iteralign.errors import UserError
from iteralign.report.html import render_html
from iteralign.report.plots import draw_all
from iteralign.report.run_reader import read_run
from iteralign.report.summary_md import render_summary
from iteralign.store import layout
from iteralign.store.run_dir import write_text_atomic

log = logging.getLogger(__name__)


def write_report(run_dir: Path, out_dir: Path | None = None) -> tuple[Path, Path]:
    """Write report.html and report.md for `run_dir` into `out_dir`; returns their paths."""
    run = read_run(Path(run_dir))
    out_dir = Path(out_dir) if out_dir is not None else run.root
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir}: is a file; --out takes a folder for report.html and report.md")
    plots = draw_all(run)
    log.debug("report for %s: %d iterations, %d plots", run.root, len(run.iterations), len(plots))
    for note in run.notes:  # also in the report, but a person running the command should see them now
        log.warning("%s", note)
    page, summary = render_html(run, plots), render_summary(run)
    html_path, md_path = out_dir / layout.REPORT_HTML, out_dir / layout.REPORT_MD
    try:
        write_text_atomic(html_path, page)
        write_text_atomic(md_path, summary)
    except OSError as exc:
        raise UserError(f"{out_dir}: cannot write the report there ({exc.strerror}); pass --out DIR to write it "
                        "elsewhere") from None
    return html_path, md_path
