"""Training: the train state, the jitted step, scanned or looped epochs, the pure training loop
(``funcnn.train.loop``), ``fit`` and its callbacks ([`funcnn.train.callbacks`][funcnn.train.callbacks]), the
run's output folder ([`funcnn.train.run_folder`][funcnn.train.run_folder]), ``evaluate`` and the moving
average of the
parameters ([`funcnn.train.ema`][funcnn.train.ema])."""

from funcnn.train.callbacks import (
    EMA,
    Callback,
    Checkpoints,
    EarlyStopping,
    ProgressBar,
    StopTraining,
    TensorBoard,
    TrainStart,
)
from funcnn.train.ema import EmaState, ema_params, with_ema
from funcnn.train.epoch import make_scan_epoch, run_loop_epoch
from funcnn.train.evaluate import evaluate
from funcnn.train.fit import FitResult, fit
from funcnn.train.loop import MODES, NonFiniteLossError
from funcnn.train.metrics import plot_curves, read_jsonl, write_jsonl
from funcnn.train.optimizers import OPTIMIZERS, learning_rate_schedule, make_optimizer
from funcnn.train.run_folder import FolderInUseError, Inspection, Restored, RunFolder
from funcnn.train.state import TrainState, abstract_train_state, init_train_state
from funcnn.train.step import (
    DEFAULT_LOSS,
    PRECISIONS,
    StepMetrics,
    accuracy,
    build_train_step,
    forward,
    make_train_step,
)

__all__ = [
    "EMA",
    "Callback",
    "Checkpoints",
    "EarlyStopping",
    "EmaState",
    "TensorBoard",
    "ema_params",
    "with_ema",
    "FolderInUseError",
    "Inspection",
    "ProgressBar",
    "Restored",
    "RunFolder",
    "StopTraining",
    "TrainStart",
    "DEFAULT_LOSS",
    "MODES",
    "OPTIMIZERS",
    "PRECISIONS",
    "FitResult",
    "NonFiniteLossError",
    "StepMetrics",
    "TrainState",
    "abstract_train_state",
    "accuracy",
    "build_train_step",
    "evaluate",
    "fit",
    "forward",
    "init_train_state",
    "learning_rate_schedule",
    "make_optimizer",
    "make_scan_epoch",
    "make_train_step",
    "plot_curves",
    "read_jsonl",
    "run_loop_epoch",
    "write_jsonl",
]
