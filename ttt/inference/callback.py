"""The Lightning callback that predicts a task's test outputs when its adaptation ends: for every
task of the fit's DataModule (one per fit; all of them for the shared adapter), with the adapted
model, through a `Predictor` (which writes each task's `predictions.json`)."""

from __future__ import annotations

import lightning.pytorch as pl

from ttt.inference.predictor import Predictor


class AugmentedInference(pl.Callback):
    """Augmented inference + voting for the tasks a fit adapted to."""

    def __init__(self, predictor: Predictor):
        self.predictor = predictor

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.predictor.predict(pl_module.model, trainer.datamodule.tasks)
