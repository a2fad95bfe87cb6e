"""The one training loop shared by every stage, with its checkpoints, logging and distributed helpers.

Public: `Task` (the task contract, `robustok.train.task`) and the export API (`robustok.train.export`):
`final_model_dir`, `is_finished`, `checkpoint_steps`, `export_checkpoint`, `train_or_resume`.
"""

from robustok.train.export import checkpoint_steps, export_checkpoint, final_model_dir, is_finished, train_or_resume
from robustok.train.task import Task

__all__ = ["Task", "checkpoint_steps", "export_checkpoint", "final_model_dir", "is_finished", "train_or_resume"]
