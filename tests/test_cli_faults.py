"""Faults an operator meets, against the real command line in subprocesses: two writers on one
folder, stop signals at any moment, a full disk, an undecodable path, ``evaluate`` while a run
saves, hostile ``.npz`` files and a hand-edited ``run.json``. Each ends in one line on stderr and
its own exit status, and loses nothing: the resumed run equals an uninterrupted one bit for bit."""

import json
import os
import random
import re
import shlex
import signal
import subprocess
import sys
import time
import zipfile

import jax
import numpy as np
import pytest

from funcnn import checkpoint
from funcnn.cli import EXIT_STATUS, main
from funcnn.models import MODELS
from funcnn.train import RunFolder, abstract_train_state, make_optimizer

SETTINGS = [
    "--model",
    "seed_cnn",
    "--batch-size",
    "32",
    "--seed",
    "4",
    "--mode",
    "loop",
    "--schedule",
    "constant",
]
STEPS = 256 // 32  # steps per epoch


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A small learnable ``.npz`` data set: 256 training and 64 test images."""
    path = tmp_path_factory.mktemp("data") / "small.npz"
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 256), ("test", 64)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
        images[np.arange(n), 2 * labels + 4, 4:24] = 255
        arrays |= {f"x_{split}": images, f"y_{split}": labels}
    np.savez(path, **arrays)
    return path


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """The subprocesses' environment: one compilation cache for the module, a progress line per step."""
    cache = tmp_path_factory.mktemp("jax-cache")
    return os.environ | {
        "TQDM_MININTERVAL": "0",
        "JAX_COMPILATION_CACHE_DIR": str(cache),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    }


def train_command(data, out, *extra):
    return [
        sys.executable,
        "-m",
        "funcnn.cli",
        "train",
        *SETTINGS,
        "--data",
        str(data),
        "--out",
        str(out),
        *extra,
    ]


def run(command, env, **kwargs):
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, **kwargs)


def one_line(stderr):
    """The one error line of a failed command (the progress bar's lines aside); no traceback."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if ": error: " in line or ": warning: " in line]
    errors = [line for line in lines if ": error: " in line]
    assert len(errors) == 1, stderr
    return errors[0]


def final_params(out):
    optimizer = make_optimizer("adam", 1e-3, decay_steps=None)  # --schedule constant
    target = abstract_train_state(MODELS["seed_cnn"](), optimizer, (-1, 28, 28, 1))
    state, meta = checkpoint.restore(out / "checkpoints", target)
    return state, meta


def assert_same_run(out, reference):
    state, meta = final_params(out)
    expected, expected_meta = final_params(reference)
    assert meta["epoch"] == expected_meta["epoch"] and int(state.step) == int(expected.step)
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(expected.params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.fixture(scope="module")
def reference(data, env, tmp_path_factory):
    """An uninterrupted two-epoch run."""
    out = tmp_path_factory.mktemp("reference") / "run"
    done = run(train_command(data, out, "--epochs", "2"), env)
    assert done.returncode == 0, done.stderr
    return out


def wait_for(predicate, process, seconds=120):
    deadline = time.monotonic() + seconds
    while not predicate():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)


# --- two writers ---------------------------------------------------------------------------


@pytest.mark.slow
def test_a_second_writer_is_refused_at_once_naming_the_holder(data, env, tmp_path):
    out = tmp_path / "run"
    first = subprocess.Popen(
        train_command(data, out, "--epochs", "3"),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: (out / "run.lock").exists() and (out / "run.lock").read_text(), first)
        for extra in ([], ["--resume"]):
            start = time.monotonic()
            second = run(train_command(data, out, "--epochs", "3", *extra), env)
            assert second.returncode == EXIT_STATUS["output folder in use by another run"]
            assert re.search(
                rf"run is in use by process {first.pid} on \S+ \(since .*\)", one_line(second.stderr)
            )
            assert time.monotonic() - start < 60
        _, stderr = first.communicate(timeout=300)
    finally:
        first.kill()
    assert first.returncode == 0, stderr
    assert json.loads((out / "run.json").read_text())["epochs"] == 3  # the loser removed nothing
    assert checkpoint.latest_step(out / "checkpoints") == 3 * STEPS


# --- stop signals --------------------------------------------------------------------------


def progress_steps(text):
    return [int(c) for c in re.findall(r"(\d+)/\d+ \[", text)]


@pytest.mark.parametrize(
    ("signum", "moment"),
    [
        (signal.SIGTERM, "first compile"),
        pytest.param(signal.SIGHUP, "mid epoch", marks=pytest.mark.slow),
        pytest.param(signal.SIGINT, "first compile", marks=pytest.mark.slow),
        pytest.param(signal.SIGINT, "twice mid epoch", marks=pytest.mark.slow),
        pytest.param(signal.SIGTERM, "random", marks=pytest.mark.slow),
    ],
)
def test_a_stop_signal_ends_the_run_at_a_safe_point(data, env, reference, tmp_path, signum, moment):
    """SIGTERM, SIGHUP and Ctrl-C end the run with 128 + the signal's number and one line, at any
    moment (the first compile included); the resumed run equals the uninterrupted one bit for bit."""
    out = tmp_path / "run"
    process = subprocess.Popen(
        train_command(data, out, "--epochs", "2"), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    seen = b""
    try:
        if moment == "first compile":
            wait_for(lambda: (out / "run.lock").exists(), process)
            time.sleep(0.3)
        elif moment == "random":
            time.sleep(random.uniform(0.5, 8.0))
        else:
            while len([s for s in progress_steps(seen.decode()) if s > STEPS]) < 2:
                chunk = os.read(process.stderr.fileno(), 4096)
                assert chunk, seen
                seen += chunk
        process.send_signal(signum)
        if moment.startswith("twice"):
            time.sleep(0.02)
            process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    stderr = (seen + stderr).decode()
    if process.returncode == 0:  # the random moment came after the end
        assert moment == "random"
    else:
        assert process.returncode == 128 + signum, stderr
        line = one_line(stderr)
        name = signal.Signals(signum).name
        assert re.fullmatch(
            rf"funcnn train: error: interrupted by {name}(; continue with `.*--resume`| before the first "
            r"checkpoint; nothing was saved)",
            line,
        ), line
        assert not any("tmp" in p.name for p in (out / "checkpoints").glob("*"))
        finished = run(train_command(data, out, "--epochs", "2", "--resume"), env)
        assert finished.returncode == 0, finished.stderr
    assert_same_run(out, reference)


def test_the_resume_hint_quotes_a_path_with_spaces(data, tmp_path, capsys, monkeypatch):
    out = tmp_path / "my runs" / "a b"
    assert main(["train", *SETTINGS, "--epochs", "1", "--data", str(data), "--out", str(out)]) == 0

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(RunFolder, "save", stopped)
    capsys.readouterr()
    status = main(["train", "--resume", "--epochs", "2", "--out", str(out)])
    hint = re.search(r"continue with `(.*)`$", capsys.readouterr().err.strip()).group(1)
    assert status == 130 and shlex.split(hint) == ["funcnn", "train", "--out", str(out), "--resume"]


# --- a full disk, an undecodable path ------------------------------------------------------


def limited(command, kilobytes=1024):
    """``command`` with every file it writes limited to ``kilobytes``: a write past the limit fails
    with EFBIG, as a write to a full disk fails with ENOSPC (Python ignores SIGXFSZ)."""
    return ["sh", "-c", f'ulimit -f {2 * kilobytes} && exec "$@"', "sh", *command]


@pytest.mark.slow
def test_a_failed_checkpoint_write_exits_4_and_keeps_every_older_checkpoint(data, env, reference, tmp_path):
    """Every write past a size limit fails, as on a full disk; the partly written step is removed."""
    out = tmp_path / "run"
    assert run(train_command(data, out, "--epochs", "1"), env).returncode == 0
    full = run(limited(train_command(data, out, "--epochs", "2", "--resume")), env)
    assert full.returncode == EXIT_STATUS["output folder cannot be written"], full.stderr
    line = one_line(full.stderr)
    assert re.fullmatch(r"funcnn train: error: cannot write \S+checkpoints/16: File too large", line), line
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [str(STEPS)]
    assert RunFolder(out).inspect().intact == STEPS
    finished = run(train_command(data, out, "--epochs", "2", "--resume"), env)
    assert finished.returncode == 0, finished.stderr
    assert_same_run(out, reference)


def test_a_fresh_run_that_cannot_write_leaves_no_folder(data, env, tmp_path):
    out = tmp_path / "run"
    full = run(limited(train_command(data, out, "--epochs", "1")), env)
    assert full.returncode == EXIT_STATUS["output folder cannot be written"], full.stderr
    one_line(full.stderr)
    assert not out.exists()


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB file system, where this machine lets the test mount one (as root)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode:
        pytest.skip("cannot mount a small file system here; the size-limit test covers the write path")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_exits_4(data, env, small_disk):
    out = small_disk / "run"
    full = run(train_command(data, out, "--epochs", "1"), env)
    assert full.returncode == EXIT_STATUS["output folder cannot be written"], full.stderr
    assert "No space left on device" in one_line(full.stderr)
    assert not out.exists()


@pytest.fixture
def read_only_disk(tmp_path):
    """A read-only file system, where this machine lets the test mount one (as root, whom file
    permissions do not stop)."""
    mount = tmp_path / "ro"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode:
        pytest.skip("cannot mount a read-only file system here")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_read_only_output_folder_exits_4_at_once(data, env, read_only_disk):
    done = run(train_command(data, read_only_disk / "run", "--epochs", "1"), env)
    assert done.returncode == EXIT_STATUS["output folder cannot be written"], done.stderr
    assert re.fullmatch(
        r"funcnn train: error: cannot write \S+/ro/run\S*: Read-only file system", one_line(done.stderr)
    )


def test_an_undecodable_output_path_exits_4_before_training(data, env, tmp_path):
    out = os.fsencode(tmp_path) + b"/run\xff"
    command = [os.fsencode(a) for a in train_command(data, "X", "--epochs", "1")]
    command[command.index(b"X")] = out
    start = time.monotonic()
    done = subprocess.run(command, env=env, capture_output=True, timeout=300)
    stderr = done.stderr.decode(errors="replace")
    assert done.returncode == EXIT_STATUS["output folder cannot be written"], stderr
    assert "not valid UTF-8" in one_line(stderr) and time.monotonic() - start < 60
    assert not os.path.exists(out)


# --- evaluate while a run saves ------------------------------------------------------------


@pytest.mark.slow
def test_evaluate_while_training_saves_never_calls_a_step_damaged(data, env, tmp_path, capsys):
    out = tmp_path / "run"
    command = train_command(data, out, "--epochs", "6", "--limit", "128")
    training = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    statuses = []
    try:
        while training.poll() is None:
            status = main(["evaluate", "--out", str(out), "--data", str(data)])
            err = capsys.readouterr().err
            assert status in (0, 2) and "damaged" not in err, err
            assert status == 0 or "no complete checkpoint found" in err, err
            statuses.append(status)
    finally:
        training.kill()
    assert training.returncode == 0 and statuses.count(0) >= 2, statuses


# --- hostile data --------------------------------------------------------------------------


def test_an_npz_declaring_a_huge_array_is_refused_before_reading(env, tmp_path):
    path = tmp_path / "huge.npz"
    with zipfile.ZipFile(path, "w") as archive:
        for key in ("x_train", "y_train", "x_test", "y_test"):
            with archive.open(f"{key}.npy", "w") as member:
                header = {"descr": "|u1", "fortran_order": False, "shape": (10**12, 28, 28)}
                np.lib.format.write_array_header_1_0(member, header)
    done = run(
        [sys.executable, "-m", "funcnn.cli", "train", "--data", str(path), "--out", str(tmp_path / "o")], env
    )
    assert done.returncode == EXIT_STATUS["bad arguments or data"]
    assert re.search(r"huge\.npz: x_train declares shape \(1000000000000, 28, 28\)", one_line(done.stderr))
    assert not (tmp_path / "o").exists()


# --- run.json edited by hand ---------------------------------------------------------------


@pytest.fixture(scope="module")
def one_epoch(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("one") / "run"
    assert main(["train", *SETTINGS, "--epochs", "1", "--data", str(data), "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize(
    ("edit", "pattern"),
    [
        (
            {"lr": 0.01},
            r"run\.json disagrees with checkpoint step 8 in \S+: lr 0\.01 \(the checkpoint: 0\.001\)",
        ),
        ({"model": "lenet5"}, r"model 'lenet5' \(the checkpoint: 'seed_cnn'\)"),
        ({"batch_size": 16}, r"batch_size 16 \(the checkpoint: 32\)"),
        (
            {"lr": "fast"},
            r"run\.json holds settings this funcnn cannot use: lr='fast' \(must be a positive finite",
        ),
    ],
)
def test_an_edited_run_json_is_refused_naming_the_file_the_setting_and_both_values(
    one_epoch, tmp_path, capsys, edit, pattern
):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(one_epoch, out)
    settings = json.loads((out / "run.json").read_text())
    (out / "run.json").write_text(json.dumps(settings | edit))
    capsys.readouterr()
    status = main(["train", "--resume", "--epochs", "2", "--out", str(out)])
    err = capsys.readouterr().err
    assert status == EXIT_STATUS["damaged or incompatible checkpoint"], err
    assert re.search(pattern, one_line(err)), err
    assert checkpoint.all_steps(out / "checkpoints") == [STEPS]


def test_a_setting_given_against_the_run_names_run_json(one_epoch, tmp_path, capsys):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(one_epoch, out)
    capsys.readouterr()
    status = main(["train", "--resume", "--batch-size", "64", "--out", str(out)])
    line = one_line(capsys.readouterr().err)
    assert status == EXIT_STATUS["bad arguments or data"]
    assert re.search(r"cannot resume with different settings: --batch-size 64 \(\S+/run\.json: 32\)", line), (
        line
    )
