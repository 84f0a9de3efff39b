"""The closed loop: monitor -> train -> gate -> promote -> guard window -> rollback.

loop = RetrainLoop(lake, registry, DecisionLog.from_settings(settings), LoopConfig(...))
result = loop.step()        # one pass; every decision lands in the decision log
loop.finish(job, status)    # a training job ended (the promote Lambda; in-process: by itself)
"""

from recloop.loop.controller import LoopConfig, RetrainLoop, StepResult
from recloop.loop.errors import LoopError
from recloop.loop.guard import GuardConfig
from recloop.loop.training import InProcessTrainer, SageMakerTrainer, Trainer, TrainSpec

__all__ = [
    "GuardConfig",
    "InProcessTrainer",
    "LoopConfig",
    "LoopError",
    "RetrainLoop",
    "SageMakerTrainer",
    "StepResult",
    "TrainSpec",
    "Trainer",
]
