"""Class tables of the datasets published checkpoints were trained on (no torch import)."""
