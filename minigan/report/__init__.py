"""The one writer of a run folder's pictures of what was recorded, and of RUN/index.html.

    refresh(run)       draw internals.png, d_logits.png, spectra.png from the run's JSON lines
                       and rewrite index.html (what `python -m minigan inspect` also calls)
    RunReport()        a trainer callback doing that whenever the trainer redraws its pictures
                       (after epochs, within its picture budget) and when training stops

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
    """Refresh the run's pictures and index.html whenever the trainer redraws its own (after
    an epoch, within its `picture_budget`) and when training stops."""

    def __init__(self):
        self._drawn: tuple | None = None      # (run folder, step) of the last refresh

    def on_pictures(self, trainer) -> None:
        refresh(trainer.out)
        self._drawn = (trainer.out, trainer.step)

    def on_train_end(self, trainer) -> None:
        if self._drawn == (trainer.out, trainer.step):
            return
        try:                                  # also runs while an error stops training
            self.on_pictures(trainer)
        except Exception as e:  # noqa: BLE001 - a picture must not hide the real error
            print(f"minigan.report: could not refresh {trainer.out}: {e}")


__all__ = ["RunReport", "refresh", "write_page"]
