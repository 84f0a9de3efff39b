"""The closed loop: monitor -> train -> gate -> promote -> guard window -> rollback.

loop = RetrainLoop(lake, registry, DecisionLog.from_settings(settings), LoopConfig(...))
result = loop.step()        # one pass; every decision lands in the decision log
"""

from recloop.loop.controller import GuardConfig, LoopConfig, RetrainLoop, StepResult
from recloop.loop.errors import LoopError
from recloop.loop.training import TrainOutcome, TrainSpec, train_and_gate

__all__ = [
    "GuardConfig",
    "LoopConfig",
    "LoopError",
    "RetrainLoop",
    "StepResult",
    "TrainOutcome",
    "TrainSpec",
    "train_and_gate",
]
