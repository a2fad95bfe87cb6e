"""The one training loop shared by every stage, with its checkpoints, logging and distributed helpers."""
