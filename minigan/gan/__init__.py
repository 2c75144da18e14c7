"""GANs: model builders from known recipes, losses, sampling, and the training loop."""

from .checkpoint import load_checkpoint, save_checkpoint
from .distance import PixelFrechet
from .losses import (
    BCELoss,
    GANLoss,
    HingeLoss,
    WGANGPLoss,
    gradient_penalty,
    make_loss,
    r1_penalty,
)
from .models import ARCHS, NET_OPTIONS, Recipe, as_critic, build, net_options, recipe_for
from .sampling import generate, latent_walk, lerp, slerp, to_uint8
from .trainer import (
    NonFiniteLossError,
    TrainConfig,
    Trainer,
    TrainingInterrupted,
    has_quality_metrics,
    load_images,
    train,
)

__all__ = [
    "ARCHS", "BCELoss", "GANLoss", "HingeLoss", "NET_OPTIONS", "NonFiniteLossError",
    "PixelFrechet", "Recipe", "TrainConfig", "Trainer", "TrainingInterrupted", "WGANGPLoss",
    "as_critic", "build", "generate", "gradient_penalty", "has_quality_metrics", "latent_walk",
    "lerp", "load_checkpoint", "load_images", "make_loss", "net_options", "r1_penalty",
    "recipe_for",
    "save_checkpoint", "slerp", "to_uint8", "train",
]
