"""Model loading and the LightningModule."""
