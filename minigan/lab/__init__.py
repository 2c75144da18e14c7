"""The 2-D GAN lab: toy mixtures, small MLPs, packing, the mode-collapse protocol, and frames
that show D's judgement and G's mapping as training goes.

    from minigan.lab import LabConfig, LabTrainer
    lab = LabTrainer(LabConfig(mixture="ring", loss="bce", out="runs/ring"))
    lab.d_step(); lab.g_step(); lab.frame()      # one update at a time
    lab.fit()                                    # or to the end: RUN/lab.gif, metrics.jsonl
"""

from . import mixtures, models, protocol
from .mixtures import Mixture, grid, ring
from .models import Packed, discriminator, generator, pack
from .protocol import evaluate
from .trainer import LabConfig, LabTrainer, train

__all__ = ["LabConfig", "LabTrainer", "Mixture", "Packed", "discriminator", "evaluate",
           "generator", "grid", "mixtures", "models", "pack", "protocol", "ring", "train"]
