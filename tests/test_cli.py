"""The command line: help, one-line errors with status 2, a full train/evaluate cycle, and kills.

The kill test trains in subprocesses on small synthetic IDX files, SIGKILLs
them in the middle of a checkpoint write and in the middle of an epoch, and
checks that ``--resume`` ends with exactly the parameters of an
uninterrupted run.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from funcnn import checkpoint
from funcnn.cli import main
from funcnn.data import write_idx
from funcnn.models import INPUT_SHAPE, MODELS
from funcnn.train import abstract_train_state, make_optimizer, read_jsonl

COMMANDS = ["train", "evaluate", "summary", "filters"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """Synthetic Fashion-MNIST: 512 training and 64 test images, some files gzipped."""
    folder = tmp_path_factory.mktemp("idx")
    rng = np.random.default_rng(0)
    for split, n, suffix in (("train", 512, ".gz"), ("t10k", 64, "")):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
        images[np.arange(n), 2 * labels + 4, 4:24] = 255  # a learnable stripe per class
        write_idx(folder / f"{split}-images-idx3-ubyte{suffix}", images)
        write_idx(folder / f"{split}-labels-idx1-ubyte", labels)
    return folder


def run_main(argv, capsys):
    """``main(argv)`` in this process: ``(status, stdout, stderr)``."""
    try:
        status = main(argv)
    except SystemExit as exit_:
        status = exit_.code
    out, err = capsys.readouterr()
    return status, out, err


def assert_one_line_error(status, err, pattern):
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert re.search(pattern, lines[0]), lines[0]


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_help(command, capsys):
    status, out, _ = run_main([command, "--help"] if command else ["--help"], capsys)
    assert status == 0
    assert out.startswith(f"usage: funcnn {command}".rstrip())


@pytest.mark.parametrize(
    ("argv", "pattern"),
    [
        ([], "funcnn: error: the following arguments are required: COMMAND"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["train"], "funcnn train: error: the following arguments are required: --out"),
        (["train", "--out", "o", "--epochs", "0"], "--epochs: must be a positive integer, got 0"),
        (["train", "--out", "o", "--batch-size", "many"], "--batch-size: invalid _positive_int value"),
        (["train", "--out", "o", "--lr", "-1"], "--lr: must be a positive number, got -1"),
        (["train", "--out", "o", "--optimizer", "rmsprop"], "--optimizer: invalid choice: 'rmsprop'"),
        (["train", "--out", "o", "--precision", "fp8"], "--precision: invalid choice"),
        (["summary", "vgg"], "funcnn summary: error: argument MODEL: invalid choice: 'vgg'"),
        (["evaluate"], "the following arguments are required: --out"),
        (["filters", "--out", "f.png", "--index", "-1"], "--index: must be a non-negative integer, got -1"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(argv, pattern, capsys):
    status, _, err = run_main(argv, capsys)
    assert_one_line_error(status, err, pattern)


def test_missing_data_says_how_to_install(tmp_path, capsys):
    status, _, err = run_main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "o")], capsys)
    assert_one_line_error(
        status, err, "funcnn train: error: Fashion-MNIST not found .*apt-get install dataset-fashion"
    )


def test_corrupt_data_names_the_file(data_dir, tmp_path, capsys):
    for path in data_dir.iterdir():
        (tmp_path / path.name).write_bytes(path.read_bytes())
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x40" + b"\x01" * 10)
    status, _, err = run_main(["filters", "--data", str(tmp_path), "--out", str(tmp_path / "f.png")], capsys)
    assert_one_line_error(status, err, "t10k-labels-idx1-ubyte: truncated data")


def test_evaluate_without_checkpoint(tmp_path, capsys):
    status, _, err = run_main(["evaluate", "--out", str(tmp_path)], capsys)
    assert_one_line_error(status, err, "funcnn evaluate: error: .*checkpoints: no complete checkpoint found")


def test_evaluate_a_checkpoint_not_written_by_the_command_line(tmp_path, capsys):
    checkpoint.save(tmp_path / "checkpoints", 1, {"w": np.zeros(2, np.float32)}, {"epoch": 1})
    status, _, err = run_main(["evaluate", "--out", str(tmp_path)], capsys)
    assert_one_line_error(status, err, "checkpoints: the checkpoint holds no settings of `funcnn train`")


def test_summary(capsys):
    status, out, _ = run_main(["summary", "fashion_mnist_cnn"], capsys)
    assert status == 0
    assert "(-1, 7, 7, 64)" in out and "trainable params: 421,642" in out


def test_batch_larger_than_the_training_set(data_dir, tmp_path, capsys):
    argv = ["train", "--data", str(data_dir), "--out", str(tmp_path), "--limit", "64", "--batch-size", "128"]
    status, _, err = run_main(argv, capsys)
    assert status == 2 and err.strip() == "funcnn train: error: --batch-size 128 exceeds the 64 training images"


def test_filters_writes_a_png(data_dir, tmp_path, capsys):
    status, out, _ = run_main(["filters", "--data", str(data_dir), "--out", str(tmp_path / "f.png")], capsys)
    assert status == 0 and "wrote" in out
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"
    status, _, err = run_main(["filters", "--data", str(data_dir), "--out", "x.png", "--index", "64"], capsys)
    assert_one_line_error(status, err, "--index 64 is out of range: there are 64 test images")


def test_train_evaluate_and_resume_settings(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--model", "seed_cnn", "--epochs", "2", "--batch-size", "32", "--limit", "128"]
    argv += ["--data", str(data_dir), "--out", str(out), "--precision", "bf16", "--augment", "--seed", "5"]
    status, stdout, _ = run_main(argv, capsys)
    assert status == 0
    records = read_jsonl(out / "metrics.jsonl")
    assert [r["epoch"] for r in records] == [1, 2] and records[-1]["step"] == 8
    assert f"final test accuracy: {records[-1]['test_accuracy']:.4f}" in stdout

    status, stdout, _ = run_main(["evaluate", "--out", str(out), "--data", str(data_dir)], capsys)
    assert status == 0
    assert stdout.startswith(f"test accuracy: {records[-1]['test_accuracy']:.4f}")
    assert "epoch 2, step 8, 64 images" in stdout

    status, _, err = run_main(["train", "--out", str(out), "--data", str(data_dir)], capsys)
    assert_one_line_error(status, err, "already holds checkpoints .*latest step 8")
    resume = ["train", "--out", str(out), "--data", str(data_dir), "--resume", "--lr", "0.1", "--seed", "5"]
    status, _, err = run_main(resume, capsys)
    assert_one_line_error(status, err, r"cannot resume .* different settings: --lr 0.1 \(checkpoint: 0.001\)")
    status, stdout, _ = run_main(resume[:-4], capsys)  # the settings come from the checkpoint
    assert status == 0 and "final test accuracy" in stdout
    assert json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])["epoch"] == 2


def test_module_entry_point_reports_bad_data_without_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "funcnn.cli", "train", "--data", str(tmp_path), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert_one_line_error(result.returncode, result.stderr, "Fashion-MNIST not found")


KILL_AT_COMMIT = """
import os, signal, sys
rename, commits = os.rename, []
def killing_rename(src, dst, *args, **kwargs):
    # orbax commits a checkpoint by renaming STEP.orbax-checkpoint-tmp to STEP
    if str(src).endswith(".orbax-checkpoint-tmp") and os.path.basename(os.path.dirname(str(dst))) == "checkpoints":
        commits.append(dst)
        if len(commits) == int(sys.argv[1]):
            os.kill(os.getpid(), signal.SIGKILL)
    return rename(src, dst, *args, **kwargs)
os.rename = killing_rename
from funcnn.cli import main
sys.exit(main(sys.argv[2:]))
"""

STEPS = 512 // 16  # steps per epoch in the kill test


def final_state(out):
    optimizer = make_optimizer("adam", 1e-3, decay_steps=1)  # the structure is what matters
    target = abstract_train_state(MODELS["seed_cnn"](), optimizer, INPUT_SHAPE)
    return checkpoint.restore(out / "checkpoints", target)


def kill_mid_epoch(argv, env, epoch):
    """Start training and SIGKILL it once the progress bar shows a step in the middle of ``epoch``."""
    process = subprocess.Popen(argv, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env)
    seen, deadline = b"", time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            chunk = os.read(process.stderr.fileno(), 4096)
            if not chunk:
                break
            seen += chunk
            counts = [int(c) for c in re.findall(rb"(\d+)/%d \[" % (3 * STEPS), seen)]
            if counts and (epoch - 1) * STEPS + 4 <= counts[-1] < epoch * STEPS - 8:
                process.send_signal(signal.SIGKILL)
                break
    finally:
        process.wait(timeout=60)
    return process.returncode, counts[-1] if counts else None


def test_killed_runs_resume_to_the_uninterrupted_result(data_dir, tmp_path):
    settings = ["--model", "seed_cnn", "--epochs", "3", "--batch-size", "16", "--limit", "512"]
    settings += ["--data", str(data_dir), "--mode", "loop", "--seed", "1"]
    env = os.environ | {
        "TQDM_MININTERVAL": "0",  # a progress line per step, to kill in mid-epoch
        "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "jax-cache"),  # compile once for all four runs
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    }
    train = [sys.executable, "-m", "funcnn.cli", "train", *settings]
    uninterrupted = subprocess.run(
        [*train, "--out", str(tmp_path / "ref")], env=env, capture_output=True, timeout=300
    )
    assert uninterrupted.returncode == 0, uninterrupted.stderr
    reference, _ = final_state(tmp_path / "ref")

    out = tmp_path / "killed"
    command = [*train, "--out", str(out)]

    # 1. SIGKILL inside the second checkpoint write, after its files are written, before the commit.
    killed = subprocess.run([sys.executable, "-c", KILL_AT_COMMIT, "2", *command[3:]], env=env, timeout=300)
    assert killed.returncode == -signal.SIGKILL
    directory = out / "checkpoints"
    assert (directory / f"{2 * STEPS}.orbax-checkpoint-tmp").is_dir()  # the half-done write is there
    assert checkpoint.all_steps(directory) == [STEPS]
    state, meta = final_state(out)
    assert meta["epoch"] == 1 and int(state.step) == STEPS

    # 2. SIGKILL in the middle of epoch 3 of the resumed run.
    status, count = kill_mid_epoch([*command, "--resume"], env, epoch=3)
    assert status == -signal.SIGKILL and 2 * STEPS < count < 3 * STEPS
    assert checkpoint.all_steps(directory) == [STEPS, 2 * STEPS]
    assert not any("tmp" in p.name for p in directory.iterdir())
    assert [r["epoch"] for r in read_jsonl(out / "metrics.jsonl")] == [1, 2]

    # 3. Resume to the end: the same parameters as the uninterrupted run, bit for bit.
    finished = subprocess.run([*command, "--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    state, meta = final_state(out)
    assert meta["epoch"] == 3 and int(state.step) == 3 * STEPS
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(reference.params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    ours, theirs = read_jsonl(out / "metrics.jsonl"), read_jsonl(tmp_path / "ref" / "metrics.jsonl")
    assert [r["train_loss"] for r in ours] == [r["train_loss"] for r in theirs]
