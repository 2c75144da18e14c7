"""The one writer of a run folder's pictures of what was recorded, and of RUN/index.html.

    refresh(run)       draw internals.png, d_logits.png, spectra.png from the run's JSON lines
                       and rewrite index.html (what `python -m minigan inspect` also calls)
    RunReport()        a trainer callback doing that at the end of every epoch and of training

The drawing itself is minigan.viz (the one plotting module); the trainer (gan/) never imports
this package: the CLI hands it a RunReport.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..gan.callbacks import Callback, read_jsonl
from .page import write_page


def refresh(run: str | os.PathLike) -> Path:
    """Redraw the recorded-statistics pictures of a run folder and rewrite its index.html."""
    from .. import viz

    run = Path(run)
    internals = read_jsonl(run / "internals.jsonl")
    if internals:
        viz.plot_internals(internals, run / "internals.png",
                           title="every layer of G (above the line) and D over training")
    views = read_jsonl(run / "views.jsonl")
    if views:
        viz.plot_logit_histograms(views, run / "d_logits.png")
        viz.plot_spectra(views[-1]["spectrum_real"],
                         [(f"epoch {v['epoch']}", v["spectrum_fake"]) for v in views],
                         run / "spectra.png")
    return write_page(run)


class RunReport(Callback):
    """Refresh the run's pictures and index.html after every epoch and when training stops."""

    def on_epoch_end(self, trainer) -> None:
        refresh(trainer.out)

    def on_train_end(self, trainer) -> None:
        try:                                  # also runs while an error stops training
            refresh(trainer.out)
        except Exception as e:  # noqa: BLE001 - a picture must not hide the real error
            print(f"minigan.report: could not refresh {trainer.out}: {e}")


__all__ = ["RunReport", "refresh", "write_page"]
