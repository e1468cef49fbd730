"""Models: zoo, tasks and checkpoints."""
from .checkpoint import clone, load_checkpoint, save_checkpoint
from .tasks import ClassifierTask, Task
from .zoo import MODELS, build_model, data_init

__all__ = ["MODELS", "build_model", "ClassifierTask", "Task", "clone", "data_init", "load_checkpoint",
           "save_checkpoint"]
