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
import matplotlib.image
import numpy as np
import pytest

import funcnn as fn
from funcnn import checkpoint
from funcnn.cli import main
from funcnn.data import load_test_split, scale_images, write_idx
from funcnn.data.fashion_mnist import CLASS_NAMES
from funcnn.models import INPUT_SHAPE, MODELS
from funcnn.runtime import CPU_CONVOLUTIONS, HUGE_PAGES
from funcnn.train import RunFolder, abstract_train_state, make_optimizer, read_jsonl

COMMANDS = ["train", "evaluate", "export", "predict", "summary", "filters"]


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


def assert_one_line_error(status, err, pattern, expected=2):
    assert status == expected
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert re.search(pattern, lines[0]), lines[0]
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
        (
            ["train", "--out", "o", "--batch-size", "many"],
            "--batch-size: must be a positive integer, got 'many'",
        ),
        (["train", "--out", "o", "--lr", "-1"], "--lr: must be a positive finite number, got -1"),
        (["train", "--out", "o", "--lr", "inf"], "--lr: must be a positive finite number, got inf"),
        (["train", "--out", "o", "--lr", "nan"], "--lr: must be a positive finite number, got nan"),
        (["train", "--out", "o", "--lr", "fast"], "--lr: must be a positive finite number, got 'fast'"),
        (["filters", "--out", "f.png", "--index", "x"], "--index: must be a non-negative integer, got 'x'"),
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
    assert_one_line_error(
        status, err, "checkpoint step 1 in \\S+checkpoints holds no settings of `funcnn train`", expected=3
    )


def test_summary(capsys):
    status, out, _ = run_main(["summary", "fashion_mnist_cnn"], capsys)
    assert status == 0
    assert "(-1, 7, 7, 64)" in out and "trainable params: 421,642" in out


def test_summary_of_another_input_shape(capsys):
    status, out, _ = run_main(["summary", "resnet20", "--input-shape", "32", "32", "3"], capsys)
    assert status == 0
    assert "(-1, 8, 8, 64)" in out and "trainable params: 272,474" in out
    status, _, err = run_main(["summary", "lenet5", "--input-shape", "8", "8", "1"], capsys)
    assert_one_line_error(
        status,
        err,
        r"funcnn summary: error: Conv: argument `kernel_size` \(5, 5\).*larger than the padded input \(4, 4\)",
    )
    status, _, err = run_main(["summary", "lenet5", "--input-shape", "32", "32"], capsys)
    assert_one_line_error(status, err, "argument --input-shape: expected 3 arguments")


def test_batch_larger_than_the_training_set(data_dir, tmp_path, capsys):
    argv = ["train", "--data", str(data_dir), "--out", str(tmp_path), "--limit", "64", "--batch-size", "128"]
    status, _, err = run_main(argv, capsys)
    assert status == 2
    assert err.strip() == "funcnn train: error: fit: argument `batch_size` 128 exceeds the 64 training images"


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
    assert f"final test accuracy {records[-1]['test_accuracy']:.4f}" in stdout
    assert stdout.startswith("training seed_cnn (693,962 params) for 2 epochs on 4 cpu device(s); data:")
    assert (
        f"wrote {out / 'metrics.jsonl'}, {out / 'curves.png'} and checkpoints in {out / 'checkpoints'}"
        in stdout
    )

    status, stdout, _ = run_main(["evaluate", "--out", str(out), "--data", str(data_dir)], capsys)
    assert status == 0
    assert stdout.startswith(f"test accuracy: {records[-1]['test_accuracy']:.4f}")
    assert "epoch 2, step 8, 64 images" in stdout

    status, _, err = run_main(["train", "--out", str(out), "--data", str(data_dir)], capsys)
    assert_one_line_error(status, err, "already holds checkpoints .*latest step 8")
    resume = ["train", "--out", str(out), "--data", str(data_dir), "--resume", "--lr", "0.1", "--seed", "5"]
    status, _, err = run_main(resume, capsys)
    assert_one_line_error(
        status, err, r"cannot resume with different settings: --lr 0.1 \(\S+run\.json: 0.001\)"
    )
    status, stdout, err = run_main(resume[:-4], capsys)  # the settings come from the checkpoint
    assert status == 0, err
    assert stdout.startswith(f"already finished: {out} holds all 2 epochs (step 8)")
    assert json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])["epoch"] == 2


def test_module_entry_point_reports_bad_data_without_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "funcnn.cli", "train", "--data", str(tmp_path), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert_one_line_error(result.returncode, result.stderr, "Fashion-MNIST not found")


RECORD_TUNABLES = """
import os, sys
with open(os.environ["RECORD_TO"], "a") as record:
    record.write(f"{os.getpid()} {os.environ.get('GLIBC_TUNABLES', '-')} {sys.argv[1:]}\\n")
"""


CALL_MAIN = "import sys; from funcnn.cli import main; sys.exit(main(sys.argv[1:]))"


@pytest.mark.parametrize(
    "launcher, preset, expected",
    [
        (["-m", "funcnn.cli"], None, ["-", HUGE_PAGES]),
        (["-m", "funcnn.cli"], "", [""]),
        (["-m", "funcnn.cli"], "glibc.malloc.arena_max=2", ["glibc.malloc.arena_max=2"]),
        (["-c", CALL_MAIN], None, ["-"]),  # main(argv) from Python: the caller's process is left alone
    ],
)
def test_train_and_evaluate_run_under_huge_pages_unless_tunables_are_set(
    tmp_path, launcher, preset, expected
):
    """The command re-executes itself once, same process and arguments, with ``HUGE_PAGES`` set;
    a ``GLIBC_TUNABLES`` the user set (even empty) is left alone."""
    (tmp_path / "sitecustomize.py").write_text(RECORD_TUNABLES)
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    env.update(PYTHONPATH=f"{tmp_path}{os.pathsep}{env.get('PYTHONPATH', '')}", RECORD_TO=str(tmp_path / "r"))
    if preset is not None:
        env["GLIBC_TUNABLES"] = preset
    argv = [sys.executable, *launcher, "evaluate", "--out", str(tmp_path / "none")]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
    assert_one_line_error(result.returncode, result.stderr, "no complete checkpoint found")
    runs = [line.split(" ", 2) for line in (tmp_path / "r").read_text().splitlines()]
    assert [tunables for _, tunables, _ in runs] == expected
    assert len({pid for pid, _, _ in runs}) == 1  # exec, not a child process
    assert runs[-1][2].endswith(f"'evaluate', '--out', '{tmp_path / 'none'}']")


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


# --- failure paths: one line, one exit status per kind --------------------------------------


def test_version_and_exit_statuses_in_help(capsys):
    status, out, _ = run_main(["--version"], capsys)
    assert status == 0 and out.strip() == f"funcnn {fn.__version__}"
    status, out, _ = run_main(["train", "--help"], capsys)
    assert (
        "exit status: 0 success, 1 diverged, 2 bad arguments or data, 3 damaged or incompatible checkpoint"
        in " ".join(out.split())
    )


def test_filters_refuses_an_unknown_image_format(data_dir, tmp_path, capsys):
    status, _, err = run_main(["filters", "--data", str(data_dir), "--out", str(tmp_path / "f.xyz")], capsys)
    assert_one_line_error(status, err, r"--out .*f.xyz: unknown image format .xyz; use one of .*\.png")


def test_a_split_without_images_is_bad_data(tmp_path, capsys):
    for split in ("train", "t10k"):
        n = 0 if split == "t10k" else 8
        write_idx(tmp_path / f"{split}-images-idx3-ubyte", np.zeros((n, 28, 28), np.uint8))
        write_idx(tmp_path / f"{split}-labels-idx1-ubyte", np.zeros(n, np.uint8))
    for command in (["train", "--out", str(tmp_path / "o")], ["filters", "--out", str(tmp_path / "f.png")]):
        status, _, err = run_main([*command, "--data", str(tmp_path)], capsys)
        assert_one_line_error(status, err, "the test split of .* holds no images")
    assert not (tmp_path / "o").exists()


SMALL = ["--model", "seed_cnn", "--batch-size", "32", "--limit", "128", "--seed", "2"]


def test_a_diverged_run_exits_1_and_leaves_no_output_folder(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", *SMALL, "--epochs", "1", "--lr", "1e6", "--data", str(data_dir), "--out", str(out)]
    status, _, err = run_main(argv, capsys)
    lines = [line for line in err.splitlines() if "error" in line]
    assert status == 1 and len(lines) == 1 and "Traceback" not in err
    assert re.search(
        r"funcnn train: error: training diverged: loss .* \(bound 1e\+06\) at epoch 1, step \d+", lines[0]
    )
    assert not out.exists()


@pytest.fixture(scope="module")
def two_epochs(data_dir, tmp_path_factory):
    """A finished two-epoch run (steps 4 and 8), to copy and damage."""
    out = tmp_path_factory.mktemp("two") / "run"
    assert main(["train", *SMALL, "--epochs", "2", "--data", str(data_dir), "--out", str(out)]) == 0
    return out


def _copy(run, tmp_path):
    import shutil

    shutil.copytree(run, tmp_path / "run")
    return tmp_path / "run"


def _flip_bytes(out, step):
    victim = max(
        (p for p in (out / "checkpoints" / str(step) / "state").rglob("*") if p.is_file()),
        key=lambda p: p.stat().st_size,
    )
    data = bytearray(victim.read_bytes())
    data[-64:] = bytes(b ^ 0xFF for b in data[-64:])
    victim.write_bytes(bytes(data))


def test_evaluate_falls_back_from_a_damaged_checkpoint(two_epochs, data_dir, tmp_path, capsys):
    out = _copy(two_epochs, tmp_path)
    _flip_bytes(out, 8)
    status, stdout, err = run_main(["evaluate", "--out", str(out), "--data", str(data_dir)], capsys)
    assert status == 0 and "epoch 1, step 4" in stdout
    assert re.fullmatch(
        r"funcnn evaluate: warning: checkpoint step 8 is damaged \(file .* does not match its SHA-256 digest \(altered\)\); evaluating step 4\n",
        err,
    )
    assert (out / "checkpoints" / "8").is_dir()  # evaluation moves nothing


@pytest.mark.parametrize("damage", ["flip", "truncate", "remove state", "edit metadata"])
def test_no_intact_checkpoint_exits_3(two_epochs, data_dir, tmp_path, capsys, damage):
    out = _copy(two_epochs, tmp_path)
    for step in (4, 8):
        folder = out / "checkpoints" / str(step)
        if damage == "flip":
            _flip_bytes(out, step)
        elif damage == "truncate":
            victim = max(
                (p for p in (folder / "state").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size
            )
            victim.write_bytes(victim.read_bytes()[:7])
        elif damage == "remove state":
            import shutil

            shutil.rmtree(folder / "state")
        else:
            (folder / "metadata" / "metadata").write_text('{"config": {"model": "vgg"}, "epoch": "two"}')
    for command in (["evaluate"], ["train", "--resume"]):
        status, _, err = run_main([*command, "--out", str(out), "--data", str(data_dir)], capsys)
        assert_one_line_error(
            status,
            err,
            r"checkpoints: no intact checkpoint: step 8 is damaged: .*; step 4 is damaged",
            expected=3,
        )


def test_resume_moves_a_damaged_checkpoint_aside_and_replays_bit_for_bit(
    two_epochs, data_dir, tmp_path, capsys
):
    out = _copy(two_epochs, tmp_path)
    _flip_bytes(out, 8)
    status, stdout, err = run_main(["train", "--resume", "--out", str(out), "--data", str(data_dir)], capsys)
    assert status == 0, err
    assert re.search(
        r"funcnn train: warning: checkpoint step 8 is damaged \(.*\); moved it to .*damaged-checkpoints/8 and resuming from step 4",
        err,
    )
    assert "resuming from epoch 1 (step 4)" in stdout
    assert (out / "damaged-checkpoints" / "8").is_dir()
    ours, theirs = read_jsonl(out / "metrics.jsonl"), read_jsonl(two_epochs / "metrics.jsonl")
    assert [r["train_loss"] for r in ours] == [r["train_loss"] for r in theirs]


def test_incompatible_settings_in_an_intact_checkpoint_exit_3(tmp_path, capsys):
    checkpoint.save(
        tmp_path / "checkpoints",
        4,
        {"w": np.zeros(2, np.float32)},
        {"epoch": 1, "config": {"model": "vgg", "lr": "fast"}},
    )
    status, _, err = run_main(["evaluate", "--out", str(tmp_path)], capsys)
    assert_one_line_error(
        status,
        err,
        r"checkpoint step 4 in \S+checkpoints holds settings this funcnn cannot use: model='vgg' \(must be one of "
        r"fashion_mnist_cnn, .*\), epochs=<missing>, .* lr='fast' \(must be a positive finite number\)",
        expected=3,
    )


def test_extending_a_finished_run(two_epochs, data_dir, tmp_path, capsys, monkeypatch):
    out = _copy(two_epochs, tmp_path)
    status, _, err = run_main(
        ["train", "--resume", "--epochs", "1", "--out", str(out), "--data", str(data_dir)], capsys
    )
    assert_one_line_error(
        status, err, r"cannot resume with different settings: --epochs 1 \(\S+run\.json: 2\)"
    )

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(RunFolder, "save", interrupted)  # a kill during epoch 3
    status, _, err = run_main(
        ["train", "--resume", "--epochs", "3", "--out", str(out), "--data", str(data_dir)], capsys
    )
    assert (
        status == 130
        and err.strip().splitlines()[-1]
        == f"funcnn train: error: interrupted; continue with `funcnn train --out {out} --resume`"
    )
    assert json.loads((out / "run.json").read_text())["epochs"] == 3
    monkeypatch.undo()

    status, stdout, err = run_main(["train", "--resume", "--out", str(out), "--data", str(data_dir)], capsys)
    assert status == 0, err
    assert "resuming from epoch 2 (step 8)" in stdout and "finished epoch 3/3" in stdout
    records = read_jsonl(out / "metrics.jsonl")
    assert [r["epoch"] for r in records] == [1, 2, 3] and records[-1]["step"] == 12
    assert read_jsonl(two_epochs / "metrics.jsonl")[:2] == records[:2]


def test_the_parser_names_match_the_library():
    from funcnn import settings as cli
    from funcnn.models import MODELS
    from funcnn.train import MODES, OPTIMIZERS, PRECISIONS

    assert set(cli.MODEL_NAMES) == set(MODELS) and set(cli.OPTIMIZER_NAMES) == set(OPTIMIZERS)
    assert set(cli.PRECISION_NAMES) == set(PRECISIONS) and set(cli.MODE_NAMES) == set(MODES)


def _own_data(path, shape=(10, 10, 3), classes=4, n=96):
    rng = np.random.default_rng(0)
    y = rng.integers(0, classes, n)
    x = rng.normal(0.0, 0.1, (n, *shape)).astype(np.float32)
    x[np.arange(n), y] += 1.0  # a learnable row per class
    np.savez(path, x_train=x, y_train=y, x_test=x[:32], y_test=y[:32])
    return path


def test_training_on_your_own_npz_data(tmp_path, capsys):
    data = _own_data(tmp_path / "mine.npz")
    out = tmp_path / "run"
    argv = [
        "train",
        "--model",
        "small_resnet",
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "--data",
        str(data),
        "--out",
        str(out),
    ]
    status, stdout, err = run_main(argv, capsys)
    assert status == 0, err
    assert "data: 96 training and 32 test images" in stdout
    config = json.loads((out / "run.json").read_text())
    assert config["input_shape"] == [-1, 10, 10, 3] and config["num_classes"] == 4
    status, stdout, err = run_main(["evaluate", "--out", str(out), "--data", str(data)], capsys)
    assert status == 0 and "32 images" in stdout, err
    other = _own_data(tmp_path / "other.npz", shape=(12, 12, 3))
    status, _, err = run_main(["evaluate", "--out", str(out), "--data", str(other)], capsys)
    assert_one_line_error(
        status, err, r"the data's images are \(12, 12, 3\) but the run's model takes \(10, 10, 3\)"
    )
    status, _, err = run_main([*argv[:-2], "--out", str(tmp_path / "o2"), "--num-classes", "3"], capsys)
    assert_one_line_error(status, err, r"--num-classes 3 is below the largest label \+ 1 \(4\) in the data")
    (tmp_path / "broken.npz").write_bytes(b"nope")
    status, _, err = run_main(
        [*argv[:-4], "--data", str(tmp_path / "broken.npz"), "--out", str(tmp_path / "o3")], capsys
    )
    assert_one_line_error(status, err, r"broken\.npz: not a readable \.npz file")


def test_evaluate_restores_params_and_model_state_from_test_images_only(
    two_epochs, data_dir, tmp_path, capsys
):
    test_only = tmp_path / "test-only"
    test_only.mkdir()
    for path in data_dir.glob("t10k-*"):
        (test_only / path.name).write_bytes(path.read_bytes())
    status, stdout, err = run_main(["evaluate", "--out", str(two_epochs), "--data", str(test_only)], capsys)
    assert status == 0, err
    assert stdout.startswith("test accuracy: ") and "epoch 2, step 8, 64 images" in stdout


def test_module_entry_point_reports_a_usage_error_in_one_line(data_dir, tmp_path):
    argv = ["train", "--data", str(data_dir), "--out", str(tmp_path / "o"), "--num-classes", "3"]
    result = subprocess.run(
        [sys.executable, "-m", "funcnn.cli", *argv], capture_output=True, text=True, timeout=120
    )
    assert_one_line_error(
        result.returncode, result.stderr, r"--num-classes 3 is below the largest label \+ 1 \(10\)"
    )
    assert not (tmp_path / "o").exists()


def test_a_first_save_killed_before_its_manifest_starts_afresh(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", *SMALL, "--epochs", "1", "--data", str(data_dir), "--out", str(out)]
    assert run_main(argv, capsys)[0] == 0
    reference = read_jsonl(out / "metrics.jsonl")
    (out / "checkpoints" / "4" / checkpoint.MANIFEST).unlink()  # the kill: orbax committed, no manifest
    status, stdout, err = run_main(["train", "--resume", "--out", str(out)], capsys)
    assert status == 0, err
    assert "checkpoint step 4 is damaged (it has no funcnn-manifest.json" in err and "starting afresh" in err
    replayed = read_jsonl(out / "metrics.jsonl")
    assert [r["train_loss"] for r in replayed] == [r["train_loss"] for r in reference]  # bit for bit
    assert (out / "damaged-checkpoints" / "4").is_dir()


def test_resume_after_a_kill_before_the_first_checkpoint_keeps_the_run_settings(
    data_dir, tmp_path, capsys, monkeypatch
):
    out = tmp_path / "run"
    out.mkdir()  # an existing folder is left as it is, run.json included

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(RunFolder, "save", interrupted)
    argv = ["train", *SMALL, "--epochs", "1", "--data", str(data_dir), "--out", str(out)]
    status, _, err = run_main(argv, capsys)
    assert status == 130 and err.strip().endswith(
        f"interrupted; continue with `funcnn train --out {out} --resume`"
    )
    monkeypatch.undo()
    status, stdout, err = run_main(["train", "--resume", "--out", str(out)], capsys)  # no --data, no --model
    assert status == 0, err
    assert stdout.startswith("training seed_cnn (693,962 params) for 1 epochs") and str(data_dir) in stdout


def test_interrupting_a_fresh_run_before_its_first_checkpoint_says_nothing_was_saved(
    data_dir, tmp_path, capsys, monkeypatch
):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(RunFolder, "save", interrupted)
    out = tmp_path / "fresh"
    status, _, err = run_main(
        ["train", *SMALL, "--epochs", "1", "--data", str(data_dir), "--out", str(out)], capsys
    )
    assert (
        status == 130
        and err.strip().splitlines()[-1]
        == "funcnn train: error: interrupted before the first checkpoint; nothing was saved"
    )
    assert not out.exists()


def test_a_finished_run_repairs_metrics_and_curves_from_its_checkpoint(
    two_epochs, data_dir, tmp_path, capsys
):
    out = _copy(two_epochs, tmp_path)
    (out / "metrics.jsonl").write_text((out / "metrics.jsonl").read_text().splitlines()[0] + "\n")
    (out / "curves.png").write_bytes(b"trunc")
    status, stdout, _ = run_main(["train", "--resume", "--out", str(out)], capsys)
    assert status == 0 and stdout.startswith("already finished")
    assert read_jsonl(out / "metrics.jsonl") == read_jsonl(two_epochs / "metrics.jsonl")
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    ("extra", "pattern"),
    [
        (["--coordinator", "127.0.0.1:1234"], r"needs --coordinator, --num-processes and --process-id together; "
                                              r"missing --num-processes, --process-id"),
        (["--num-processes", "2", "--process-id", "0"], r"missing --coordinator$"),
        (["--coordinator", "h:1", "--num-processes", "2", "--process-id", "2"],
         r"--process-id 2 must be below --num-processes 2 \(processes count from 0\)"),
        (["--num-processes", "0"], r"argument --num-processes: must be a positive integer, got 0"),
        (["--coordinator", "foo", "--num-processes", "2", "--process-id", "0"],
         r"--coordinator 'foo' must be HOST:PORT, e.g. 10.0.0.1:1234 or \[::1\]:1234$"),
        (["--cpu-devices", "0"], r"argument --cpu-devices: must be a positive integer, got 0"),
        (["--cpu-devices", "many"], r"argument --cpu-devices: must be a positive integer, got 'many'"),
    ],
)  # fmt: skip
def test_bad_device_and_process_arguments_are_one_line_errors(tmp_path, capsys, extra, pattern):
    status, _, err = run_main(["train", "--out", str(tmp_path / "o"), *extra], capsys)
    assert_one_line_error(status, err, pattern)
    assert not (tmp_path / "o").exists()


RECORD_XLA_FLAGS = """
import os
exit_now = os._exit
def recording_exit(status):  # a failed command ends with os._exit, past atexit
    open(os.environ["RECORD_TO"], "a").write(os.environ.get("XLA_FLAGS", "-") + "\\n")
    exit_now(status)
os._exit = recording_exit
"""


def test_train_and_evaluate_run_with_cpu_convolutions(tmp_path):
    """``funcnn evaluate`` from the shell adds the flag to the user's own XLA_FLAGS before JAX starts."""
    (tmp_path / "sitecustomize.py").write_text(RECORD_XLA_FLAGS)
    env = dict(os.environ, XLA_FLAGS="--xla_cpu_use_thunk_runtime=true", RECORD_TO=str(tmp_path / "r"))
    env["PYTHONPATH"] = f"{tmp_path}{os.pathsep}{env.get('PYTHONPATH', '')}"
    argv = [sys.executable, "-m", "funcnn.cli", "evaluate", "--out", str(tmp_path / "none")]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
    assert_one_line_error(result.returncode, result.stderr, "no complete checkpoint found")
    assert (tmp_path / "r").read_text().split() == ["--xla_cpu_use_thunk_runtime=true", CPU_CONVOLUTIONS]


RESUMED_DEVICES = """
import os, sys
os.sched_getaffinity = lambda pid: set(range(3))
import jax
from funcnn import commands
from funcnn.cli import build_parser
args = build_parser().parse_args(sys.argv[2:])
print(commands._set_up_devices(args, int(sys.argv[1])), jax.device_count())
"""


@pytest.mark.parametrize(("argv", "expected"), [(["--resume"], "3 3"), (["--batch-size", "128"], "2 2")])
def test_a_resumed_run_splits_its_recorded_batch(tmp_path, argv, expected):
    """The device count is set after JAX is imported, before its backend starts, from the run's batch."""
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")}
    command = [sys.executable, "-c", RESUMED_DEVICES, "96", "train", "--out", str(tmp_path / "o"), *argv]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == expected  # 96 splits over all 3 cores; 128 over 2 of them


def test_train_uses_every_core_by_default(data_dir, tmp_path):
    """Without XLA_FLAGS, ``funcnn train`` runs one CPU device per core (as many as divide the batch)."""
    cores = len(os.sched_getaffinity(0))
    expected = max(d for d in range(1, cores + 1) if 64 % d == 0)
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    argv = ["train", "--model", "seed_cnn", "--epochs", "1", "--batch-size", "64", "--limit", "128"]
    argv += ["--data", str(data_dir), "--out", str(tmp_path / "o")]
    code = "import sys; from funcnn.cli import main; sys.exit(main(sys.argv[1:]))"
    done = subprocess.run(
        [sys.executable, "-c", code, *argv], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    note = " (one per core; --cpu-devices 1 for one)" if expected > 1 else ""
    assert f"on {expected} cpu device(s){note}; data:" in done.stdout
    assert read_jsonl(tmp_path / "o" / "metrics.jsonl")[0]["devices"] == expected


def test_an_explicit_cpu_device_count_that_cannot_apply_is_reported(tmp_path, capsys):
    """Called from Python once JAX has its devices, ``--cpu-devices 3`` cannot apply: a warning says why."""
    argv = ["train", "--cpu-devices", "3", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "o")]
    status, _, err = run_main(argv, capsys)
    assert status == 2
    assert re.fullmatch(
        "funcnn train: warning: --cpu-devices: 3 CPU devices not set: "
        "(JAX has started its backend|the environment sets a count)",  # the test configuration sets one
        err.splitlines()[0],
    )
    assert not (tmp_path / "o").exists()


def test_each_checkpoint_file_is_hashed_at_most_once_per_command(
    two_epochs, data_dir, tmp_path, capsys, monkeypatch
):
    """One inspection per command: ``--resume`` verifies the newest step once (and each new step
    once, writing its manifest); ``evaluate`` verifies the step it reads once."""
    out = _copy(two_epochs, tmp_path)
    hashed = []
    sha256 = checkpoint._sha256
    monkeypatch.setattr(checkpoint, "_sha256", lambda path: hashed.append(path) or sha256(path))
    for argv in (["train", "--resume", "--epochs", "3", "--out", str(out)], ["evaluate", "--out", str(out)]):
        hashed.clear()
        status, _, err = run_main([*argv, "--data", str(data_dir)], capsys)
        assert status == 0, err
        assert hashed and len(hashed) == len(set(hashed)), sorted(hashed)
        steps = {path.relative_to(out / "checkpoints").parts[0] for path in hashed}
        assert steps == ({"8", "12"} if argv[0] == "train" else {"12"})


def test_export_writes_an_artifact_with_the_run_s_logits(two_epochs, data_dir, tmp_path, capsys):
    target = tmp_path / "model.jax"
    status, stdout, _ = run_main(["export", "--out", str(two_epochs), str(target)], capsys)
    assert status == 0
    assert re.fullmatch(r"wrote \S+model.jax \([\d,]+ bytes\): uint8 images \(batch x 28 x 28\) to 10 logits; "
                        r"epoch 2, step 8\n", stdout)  # fmt: skip
    folder = RunFolder(two_epochs, writes=False)
    meta = folder.metadata(8)
    model = MODELS[meta["config"]["model"]](10)
    shapes = jax.eval_shape(lambda k: model.init(k, (-1, 28, 28, 1))[1:], jax.random.key(0))
    part, _ = checkpoint.restore_part(folder.checkpoints, {"params": shapes[0], "model_state": shapes[1]}, 8)
    images = load_test_split(data_dir)[0][:5]
    want = model.apply(part["params"], part["model_state"], scale_images(images))[0]
    loaded = jax.export.deserialize(bytearray(target.read_bytes()))
    np.testing.assert_allclose(loaded.call(images), want, rtol=1e-5, atol=1e-5)


def test_export_without_a_checkpoint_is_one_line(tmp_path, capsys):
    status, _, err = run_main(["export", "--out", str(tmp_path), str(tmp_path / "m.jax")], capsys)
    assert_one_line_error(status, err, "funcnn export: error: .*checkpoints: no complete checkpoint found")
    assert not (tmp_path / "m.jax").exists()


def test_predict_names_the_classes_of_the_test_split_and_of_png_files(two_epochs, data_dir, tmp_path, capsys):
    status, stdout, _ = run_main(["predict", "--out", str(two_epochs), "--count", "3"], capsys)
    assert status == 0
    lines = stdout.splitlines()
    assert len(lines) == 3 and lines[0].startswith("test image 0: ")
    for line in lines:
        ranked = re.findall(r"([A-Za-z/ -]+?) (\d\.\d{3})(?:, |$)", line.split(": ", 1)[1])
        assert len(ranked) == 3 and {name for name, _ in ranked} <= set(CLASS_NAMES)
        assert [float(p) for _, p in ranked] == sorted((float(p) for _, p in ranked), reverse=True)
    images = load_test_split(data_dir)[0]
    pngs = [tmp_path / f"{i}.png" for i in range(2)]
    for path, image in zip(pngs, images):
        matplotlib.image.imsave(path, image, cmap="gray", vmin=0, vmax=255)
    status, stdout, _ = run_main(["predict", "--out", str(two_epochs), *map(str, pngs)], capsys)
    assert status == 0
    classes = [re.sub(r" \d\.\d{3}", "", line.split(": ")[1]) for line in stdout.splitlines()]
    assert classes == [re.sub(r" \d\.\d{3}", "", line.split(": ")[1]) for line in lines[:2]]  # PNG rounds


def test_predict_refuses_images_of_another_size(two_epochs, tmp_path, capsys):
    path = tmp_path / "big.png"
    matplotlib.image.imsave(path, np.zeros((32, 32)), cmap="gray")
    status, _, err = run_main(["predict", "--out", str(two_epochs), str(path)], capsys)
    assert_one_line_error(status, err, r"the images are 32 x 32 but the run's model takes 28 x 28 images")
    status, _, err = run_main(["predict", "--out", str(two_epochs), str(tmp_path / "a.txt")], capsys)
    assert_one_line_error(status, err, r"IMAGES must be PNG files or one .npz file")


def test_init_from_another_run_with_frozen_layers(two_epochs, data_dir, tmp_path, capsys):
    """The new run starts from the other's newest checkpoint; the frozen leaves end as they started."""
    out = tmp_path / "tuned"
    argv = ["train", *SMALL, "--epochs", "1", "--data", str(data_dir), "--out", str(out)]
    status, _, err = run_main([*argv, "--init-from", str(two_epochs), "--freeze", "serial/0:*, *Dense/bias"], capsys)
    assert status == 0, err
    folder, start = RunFolder(out, writes=False), RunFolder(two_epochs, writes=False)
    model = MODELS["seed_cnn"](10)
    shapes = jax.eval_shape(lambda k: model.init(k, (-1, 28, 28, 1))[1], jax.random.key(0))
    tuned = checkpoint.restore_part(folder.checkpoints, {"params": shapes}, 4)[0]["params"]
    initial = checkpoint.restore_part(start.checkpoints, {"params": shapes}, 8)[0]["params"]
    names = jax.tree.leaves(fn.labels.tree_labels(model, shapes))
    for name, got, want in zip(names, jax.tree.leaves(tuned), jax.tree.leaves(initial), strict=True):
        frozen = name.startswith("serial/0:") or (name.endswith("/bias") and "Dense" in name)
        assert np.array_equal(got, want) == frozen, name
    assert json.loads((out / "run.json").read_text())["freeze"] == "serial/0:*, *Dense/bias"


@pytest.mark.parametrize(
    ("extra", "pattern"),
    [
        (["--freeze", "*/weight"], r"matching: pattern '\*/weight' matches none of the \d+ labels"),
        (["--freeze", "a,,b"], r"--freeze: must be shell-style patterns of parameter labels, separated by commas"),
        (["--init-from", "{other}", "--model", "lenet5"], r"funcnn train: argument `--init-from` has \d+ leaves"),
        (["--init-from", "{empty}"], r"no complete checkpoint found"),
    ],
)
def test_bad_freeze_and_init_from_are_one_line(two_epochs, data_dir, tmp_path, capsys, extra, pattern):
    extra = [e.format(other=two_epochs, empty=tmp_path) for e in extra]
    argv = ["train", *SMALL, "--epochs", "1", "--data", str(data_dir), "--out", str(tmp_path / "o"), *extra]
    status, _, err = run_main(argv, capsys)
    assert_one_line_error(status, err, pattern)
    assert not (tmp_path / "o" / "checkpoints").exists()


def test_train_with_ema_patience_and_keep_best_stops_early_and_resumes_by_the_rules(
    data_dir, tmp_path, capsys
):
    import importlib.util

    out = tmp_path / "run"
    board = ["--tensorboard"] if importlib.util.find_spec("tensorboardX") else []
    settings = ["--lr", "1e-9", "--schedule", "constant", "--data", str(data_dir), "--out", str(out)]
    features = ["--ema", "0.9", "--patience", "1", "--keep-best", *board]
    argv = ["train", *SMALL, "--epochs", "4", *settings, *features]
    status, stdout, err = run_main(argv, capsys)  # the accuracy cannot move at this rate: epoch 2 stops
    assert status == 0, err
    assert re.search(
        r"stopped early after epoch 2: test_accuracy has not improved on [\d.]+ \(epoch 1\) for 1 epoch "
        r"\(patience 1\) \(--patience\)",
        stdout,
    ), stdout
    records = read_jsonl(out / "metrics.jsonl")
    assert [r["epoch"] for r in records] == [1, 2] and all(0 <= r["ema_test_accuracy"] <= 1 for r in records)
    events = b"".join(path.read_bytes() for path in (out / "tensorboard").glob("events.out.tfevents.*"))
    assert not board or (b"accuracy/test" in events and b"learning_rate" in events)  # the run's schedule too

    status, stdout, err = run_main(["train", "--resume", "--out", str(out)], capsys)
    assert status == 0 and "already finished:" in stdout and "stopped early after epoch 2" in stdout, err
    status, _, err = run_main(["train", "--resume", "--ema", "0.5", "--out", str(out)], capsys)
    assert_one_line_error(
        status, err, r"cannot resume with different settings: --ema 0\.5 \(.*run\.json: 0\.9\)"
    )

    status, stdout, err = run_main(["train", "--resume", "--patience", "5", "--out", str(out)], capsys)
    assert status == 0, err
    records = read_jsonl(out / "metrics.jsonl")
    assert [r["epoch"] for r in records] == [1, 2, 3, 4] and "stopped" not in stdout
    assert json.loads((out / "run.json").read_text())["patience"] == 5


def test_init_from_a_pytorch_state_dict(data_dir, tmp_path, capsys):
    """``--init-from weights.pt`` fills the model through ``funcnn.interop.from_torch``; with every
    parameter frozen the run's checkpoint holds exactly those weights."""
    torch = pytest.importorskip("torch")
    from funcnn.interop import from_torch

    rng = np.random.default_rng(0)
    shapes = {"0.weight": (32, 1, 3, 3), "0.bias": (32,), "4.weight": (128, 5408), "4.bias": (128,),
              "6.weight": (10, 128), "6.bias": (10,)}  # seed_cnn's layers, in PyTorch's layouts  # fmt: skip
    state_dict = {name: torch.tensor(rng.normal(size=shape).astype(np.float32)) for name, shape in shapes.items()}
    torch.save(state_dict, tmp_path / "weights.pt")
    out = tmp_path / "run"
    argv = ["train", *SMALL, "--epochs", "1", "--data", str(data_dir), "--out", str(out)]
    status, _, err = run_main([*argv, "--init-from", str(tmp_path / "weights.pt"), "--freeze", "*"], capsys)
    assert status == 0, err
    model = MODELS["seed_cnn"](10)
    want = from_torch(model, (-1, 28, 28, 1), {k: v.numpy() for k, v in state_dict.items()})[0]
    shapes = jax.eval_shape(lambda k: model.init(k, (-1, 28, 28, 1))[1], jax.random.key(0))
    got = checkpoint.restore_part(out / "checkpoints", {"params": shapes}, 4)[0]["params"]
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_array_equal(a, b)
