"""Pin the public names of ``funcnn.train`` and ``funcnn.data``: a change here is a contract change."""

import funcnn.data
import funcnn.train

TRAIN = {
    "DEFAULT_LOSS", "MODES", "OPTIMIZERS", "PRECISIONS", "FitResult", "NonFiniteLossError", "StepMetrics",
    "TrainState", "abstract_train_state", "accuracy", "build_train_step", "evaluate", "fit", "forward", "init_train_state",
    "make_optimizer", "make_scan_epoch", "make_train_step", "plot_curves", "read_jsonl", "run_loop_epoch",
    "write_jsonl", "Callback", "Checkpoints", "ProgressBar", "StopTraining", "TrainStart", "RunFolder",
    "FolderInUseError", "Inspection", "Restored", "EMA", "EarlyStopping", "EmaState", "TensorBoard",
    "ema_params", "with_ema", "learning_rate_schedule",
}  # fmt: skip

DATA = {
    "FASHION_MNIST_MEAN", "FASHION_MNIST_STD", "DataFileError", "DataNotFoundError", "IDXError", "augment",
    "batch_indices", "data_dir", "epoch_permutation", "find_files", "iterate_batches", "load_dataset",
    "load_fashion_mnist", "load_npz", "load_test_split", "random_crop",
    "random_flip", "read_idx", "scale_images", "write_idx",
}  # fmt: skip


def test_train_names_are_pinned():
    assert set(funcnn.train.__all__) == TRAIN
    assert all(hasattr(funcnn.train, name) for name in TRAIN)


def test_data_names_are_pinned():
    assert set(funcnn.data.__all__) == DATA
    assert all(hasattr(funcnn.data, name) for name in DATA)
