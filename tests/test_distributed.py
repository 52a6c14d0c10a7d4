"""Data parallelism with jit and shardings: a sharded step equals the single-device step.

The test configuration gives JAX four CPU devices.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import funcnn as fn
from funcnn import checkpoint, distributed
from funcnn.train import DEFAULT_LOSS, init_train_state, read_jsonl
from funcnn.train.step import build_train_step

pytestmark = pytest.mark.standard_promotion  # optax's optimisers


def test_the_mesh_spans_every_device_along_data():
    mesh = distributed.data_mesh()
    assert mesh.axis_names == ("data",) and mesh.shape["data"] == jax.device_count() == 4


def test_batches_are_sharded_and_state_replicated():
    mesh = distributed.data_mesh()
    images = np.arange(8 * 3, dtype=np.float32).reshape(8, 3)
    batch = distributed.shard_batch(mesh, {"x": images, "y": np.arange(8)})
    assert batch["x"].sharding.spec == jax.sharding.PartitionSpec("data")
    assert {shard.data.shape for shard in batch["x"].addressable_shards} == {(2, 3)}
    np.testing.assert_array_equal(batch["x"], images)
    params = distributed.replicate(mesh, {"w": jnp.ones((3, 2))})
    assert all(shard.data.shape == (3, 2) for shard in params["w"].addressable_shards)


def test_a_batch_that_does_not_divide_is_refused():
    with pytest.raises(
        fn.LayerConfigError,
        match=r"shard_batch: argument `batch_size` 6 does not divide over the 4 devices of the mesh; use a multiple of 4",
    ):
        distributed.shard_batch(distributed.data_mesh(), np.zeros((6, 2)))


@pytest.mark.parametrize("grad", ["custom", "autodiff"])
def test_a_sharded_train_step_equals_the_single_device_step(grad):
    """The hand-written VJPs under jit with Auto mesh axes: XLA all-reduces the gradients."""
    model = fn.serial(
        fn.Conv(4, 3, padding="SAME", grad=grad), fn.Relu(grad=grad), fn.MaxPool(2, grad=grad),
        fn.Flatten(), fn.Dense(3, grad=grad),
    )  # fmt: skip
    optimizer = optax.sgd(0.1)
    step = jax.jit(build_train_step(model, DEFAULT_LOSS, optimizer))
    state = init_train_state(model, optimizer, jax.random.key(0), (-1, 6, 6, 1))
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 255, (8, 6, 6)).astype(np.uint8), rng.integers(0, 3, 8)
    single, single_metrics = step(state, images, labels)
    mesh = distributed.data_mesh()
    sharded, sharded_metrics = step(
        distributed.replicate(mesh, state), *distributed.shard_batch(mesh, (images, labels))
    )
    np.testing.assert_allclose(sharded_metrics.loss, single_metrics.loss, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(sharded.params), jax.tree.leaves(single.params), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_leaf_sharding_splits_the_largest_dividing_axis():
    mesh = distributed.data_mesh()
    spec = lambda shape, shard=True: distributed.leaf_sharding(mesh, shape, shard).spec  # noqa: E731
    P = jax.sharding.PartitionSpec
    assert spec((3, 3, 16, 32)) == P(None, None, None, "data")
    assert spec((36, 3)) == P("data") and spec((3, 36)) == P(None, "data")
    assert spec((3,)) == P() and spec(()) == P() and spec((2, 2)) == P()  # nothing divides by 4
    assert spec((36, 3), shard=False) == P()
    one = distributed.data_mesh(jax.devices()[:1])
    assert distributed.leaf_sharding(one, (36, 3), True).spec == P()


def test_state_shardings_shard_params_and_optimiser_state_only():
    model = fn.serial(fn.Conv(8, 3), fn.BatchNorm(), fn.Flatten(), fn.Dense(4))
    optimizer = optax.adam(1e-3)
    state = init_train_state(model, optimizer, jax.random.key(0), (-1, 6, 6, 1))
    mesh = distributed.data_mesh()
    P = jax.sharding.PartitionSpec
    sharded = distributed.state_shardings(mesh, state, shard_params=True)
    assert sharded.params[0]["kernel"].spec == P(None, None, None, "data")
    assert sharded.opt_state[0].mu[0]["kernel"].spec == P(None, None, None, "data")
    assert all(s.spec == P() for s in jax.tree.leaves(sharded.model_state))
    assert sharded.step.spec == sharded.key.spec == P()
    assert all(s.spec == P() for s in jax.tree.leaves(distributed.state_shardings(mesh, state)))


@pytest.mark.parametrize("batch", [np.zeros(()), [1, 2, 3]])
def test_a_batch_without_a_batch_axis_is_refused(batch):
    with pytest.raises(
        fn.LayerConfigError, match=r"shard_batch: argument `batch` has a leaf of shape \(\) .* no batch axis"
    ):
        distributed.shard_batch(distributed.data_mesh(), batch)


def test_local_rows_of_one_process_are_the_whole_batch():
    assert distributed.local_rows(distributed.data_mesh(), 16) == slice(0, 16)
    assert distributed.same_in_every_process("loop", ("scan", "loop")) == "loop"
    with pytest.raises(ValueError, match=r"^same_in_every_process: argument `choice` 'jit' is not one of \('scan', 'loop'\)$"):
        distributed.same_in_every_process("jit", ("scan", "loop"))
    with pytest.raises(fn.LayerConfigError, match=r"local_rows: argument `batch_size` 6 does not divide"):
        distributed.local_rows(distributed.data_mesh(), 6)


EIGHT_DEVICES = """
import json, os, sys
import jax, numpy as np, optax
import funcnn as fn
from funcnn import distributed
from funcnn.train import fit

assert jax.device_count() == 8
rng = np.random.default_rng(0)
labels = rng.integers(0, 3, 128)
images = rng.integers(0, 90, (128, 8, 8)).astype(np.uint8)
images[np.arange(128), 2 * labels + 1] += 150
data = (images, labels)
model = fn.serial(fn.Conv(8, 3, padding="SAME"), fn.Relu(), fn.MaxPool(2), fn.Flatten(), fn.Dense(3))
runs = {
    "one": {"mesh": distributed.data_mesh(jax.devices()[:1])},
    "eight": {},
    "eight_sharded": {"shard_params": True},
    "eight_loop": {"mode": "loop"},
}
result = {}
for name, options in runs.items():
    options = {"optimizer": optax.adam(1e-2), "epochs": 2, "batch_size": 32, "mode": "scan", **options}
    out = fit(model, data, data, **options)
    result[name] = {
        "devices": [r["devices"] for r in out.history],
        "curve": [[r["train_loss"], r["test_loss"]] for r in out.history],
        "params": [np.asarray(leaf).ravel().tolist() for leaf in jax.tree.leaves(out.state.params)],
    }
print(json.dumps(result))
"""


STUCK_RENDEZVOUS = "Termination timeout for `all reduce"
"""XLA:CPU's abort when not every virtual device reaches an all-reduce within 40 s: with one pool
thread per device, on 2 busy cores (6 of 8 tries); 0 of 8 with a spare thread per device."""


def _in_subprocess(code, devices, timeout=300, args=()):
    """Run ``code`` with ``devices`` CPU devices and a spare pool thread per device (as
    :func:`funcnn.runtime.plan` gives); its stdout. Once more if XLA:CPU still aborted a stuck
    all-reduce (:data:`STUCK_RENDEZVOUS`)."""
    env = dict(
        os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", PJRT_NPROC=str(2 * devices)
    )
    for _attempt in range(2):
        done = subprocess.run(
            [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=timeout
        )
        if done.returncode == 0 or STUCK_RENDEZVOUS not in done.stderr:
            break
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_eight_devices_give_the_loss_curve_of_one_replicated_and_sharded():
    result = json.loads(_in_subprocess(EIGHT_DEVICES, 8).strip().splitlines()[-1])
    assert result["one"]["devices"] == [1, 1] and result["eight"]["devices"] == [8, 8]
    reference = result["one"]
    for name in ("eight", "eight_sharded", "eight_loop"):
        np.testing.assert_allclose(result[name]["curve"], reference["curve"], rtol=1e-5, err_msg=name)
        for got, want in zip(result[name]["params"], reference["params"], strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6, err_msg=name)
    assert reference["curve"][-1][0] < reference["curve"][0][0]  # it learns


@pytest.fixture(scope="module")
def small_npz(tmp_path_factory):
    path = tmp_path_factory.mktemp("npz") / "data.npz"
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 256)
    images = rng.integers(0, 90, (256, 8, 8)).astype(np.uint8)
    images[np.arange(256), 2 * labels] += 150
    np.savez(path, x_train=images[:192], y_train=labels[:192], x_test=images[192:], y_test=labels[192:])
    return path


def _train(out, data, devices, *extra):
    """``funcnn train`` in a subprocess with ``devices`` CPU devices; its metrics."""
    code = "import sys; from funcnn.cli import main; sys.exit(main(sys.argv[1:]))"
    argv = ["train", "--model", "fashion_mnist_cnn", "--data", str(data), "--out", str(out)]
    argv += ["--batch-size", "32", "--schedule", "constant"]  # one schedule however many epochs a leg plans
    _in_subprocess(code, devices, args=[*argv, *extra])
    return read_jsonl(out / "metrics.jsonl")


@pytest.mark.slow
def test_a_checkpoint_moves_between_eight_devices_and_one(small_npz, tmp_path):
    """Written on 8 devices, resumed on 1, and the other way round: the run goes on as if on one count."""
    straight = _train(tmp_path / "straight", small_npz, 1, "--epochs", "3")
    down, up = tmp_path / "down", tmp_path / "up"
    _train(down, small_npz, 8, "--epochs", "1")
    assert read_jsonl(down / "metrics.jsonl")[0]["devices"] == 8
    _train(down, small_npz, 1, "--epochs", "3", "--resume")
    _train(up, small_npz, 1, "--epochs", "2")
    _train(up, small_npz, 8, "--epochs", "3", "--resume", "--shard-params")
    for moved in (down, up):
        records = read_jsonl(moved / "metrics.jsonl")
        assert [r["epoch"] for r in records] == [1, 2, 3]
        np.testing.assert_allclose(
            [[r["train_loss"], r["test_loss"]] for r in records],
            [[r["train_loss"], r["test_loss"]] for r in straight],
            rtol=1e-4,
        )
    assert [r["devices"] for r in read_jsonl(down / "metrics.jsonl")] == [8, 1, 1]
    assert [r["devices"] for r in read_jsonl(up / "metrics.jsonl")] == [1, 1, 8]


@pytest.mark.slow
def test_two_processes_train_like_one(small_npz, tmp_path):
    """Two processes on this machine, four CPU devices each, coordinator on 127.0.0.1: the same two
    epochs as one process with eight devices; process 0 alone writes the metrics and prints."""
    single = _train(tmp_path / "single", small_npz, 8, "--epochs", "2")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = tmp_path / "two"
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    argv = ["train", "--model", "fashion_mnist_cnn", "--data", str(small_npz), "--batch-size", "32"]
    argv += [
        "--schedule",
        "constant",
        "--epochs",
        "2",
        "--out",
        str(out),
        "--coordinator",
        f"127.0.0.1:{port}",
        "--num-processes",
        "2",
    ]
    code = "import sys; from funcnn.cli import main; sys.exit(main(sys.argv[1:]))"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", code, *argv, "--process-id", str(i)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for i in range(2)
    ]
    try:
        outputs = [p.communicate(timeout=240) for p in processes]
    finally:
        for p in processes:
            p.kill()
    assert [p.returncode for p in processes] == [0, 0], [err[-2000:] for _, err in outputs]
    assert "training fashion_mnist_cnn" in outputs[0][0] and "8 cpu device(s) in 2 processes" in outputs[0][0]
    assert "training" not in outputs[1][0] and "epoch" not in outputs[1][0]  # only process 0 prints
    records = read_jsonl(out / "metrics.jsonl")
    assert [r["devices"] for r in records] == [8, 8]
    np.testing.assert_allclose(
        [[r["train_loss"], r["test_loss"], r["test_accuracy"]] for r in records],
        [[r["train_loss"], r["test_loss"], r["test_accuracy"]] for r in single],
        rtol=1e-5,
    )
    assert (
        len(checkpoint.all_steps(out / "checkpoints")) == 2
        and checkpoint.latest_intact_step(out / "checkpoints")[0]
    )


def _two_processes(out, data, *extra, stderr=subprocess.PIPE):
    """The two processes of one run on this machine, two CPU devices each, with the shell's entry
    point (``python -m funcnn.cli``)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", TQDM_MININTERVAL="0")
    argv = [sys.executable, "-m", "funcnn.cli", "train", "--model", "fashion_mnist_cnn", "--data", str(data)]
    argv += ["--batch-size", "16", "--schedule", "constant", "--mode", "loop", "--out", str(out), *extra]
    argv += ["--coordinator", f"127.0.0.1:{port}", "--num-processes", "2"]
    return [
        subprocess.Popen([*argv, "--process-id", str(i)], env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        for i in range(2)
    ]


LOST_PROCESS_LINE = (
    "funcnn train: error: process 0 lost contact with process 1 of the run (it stopped or its host went "
    "away); the last checkpoint is intact: start every process again with --resume"
)


@pytest.mark.parametrize(
    "message",
    [
        "UNKNOWN: Gloo all-reduce failed: [external/gloo/gloo/transport/tcp/pair.cc:538] Read error "
        "[127.0.0.1]:39559: Connection reset by peer",
        "Gloo AllGather failed: [pair.cc:547] Connection closed by peer [127.0.0.1]:7565",
    ],
)
def test_a_collective_that_lost_its_other_end_names_the_lost_process(monkeypatch, message):
    monkeypatch.setattr(jax, "process_count", lambda: 2)
    with (
        pytest.raises(
            distributed.ProcessLostError, match=f"^{re.escape(LOST_PROCESS_LINE.split('error: ', 1)[1])}$"
        ),
        distributed.reporting_lost_processes(),
    ):
        raise ValueError(message)
    with pytest.raises(ValueError, match="something else"), distributed.reporting_lost_processes():
        raise ValueError("something else")


@pytest.mark.slow
def test_a_lost_process_ends_the_other_within_seconds_with_one_line(small_npz, tmp_path):
    """SIGKILL one process mid-epoch: the other ends within seconds, not JAX's default 100 (exit 6
    and one line naming the lost process where a collective reports it, else JAX's own fatal error
    once the coordinator misses its heartbeats); both resumed finish the run from the last checkpoint."""
    out = tmp_path / "run"
    processes = _two_processes(out, small_npz, "--epochs", "3")
    survivor, victim = processes
    seen = b""
    try:
        while not any(int(n) >= 16 for n in re.findall(rb"(\d+)/36 \[", seen)):
            chunk = os.read(survivor.stderr.fileno(), 4096)
            assert chunk, seen.decode()[-2000:]
            seen += chunk
        victim.kill()
        killed = time.monotonic()
        _, rest = survivor.communicate(timeout=120)
        ended = time.monotonic() - killed
    finally:
        for process in processes:
            process.kill()
    stderr = (seen + rest).decode()
    lines = [line for line in stderr.splitlines() if ": error: " in line]
    if survivor.returncode == 6:  # the survivor was in a collective with it: funcnn's line
        assert "Traceback" not in stderr and lines == [LOST_PROCESS_LINE], stderr[-3000:]
    else:  # between collectives: the coordinator's heartbeat check ends it through JAX's fatal error
        assert survivor.returncode == -signal.SIGABRT, stderr[-3000:]
        assert "The following tasks are unhealthy (stopped sending heartbeats):\n1" in stderr
    assert ended < distributed.HEARTBEAT_TIMEOUT_SECONDS + 10
    assert checkpoint.latest_intact_step(out / "checkpoints")[0] == 12  # epoch 1 of 12 steps
    resumed = _two_processes(out, small_npz, "--epochs", "3", "--resume", stderr=subprocess.DEVNULL)
    assert [p.wait(timeout=300) for p in resumed] == [0, 0]
    assert [r["epoch"] for r in read_jsonl(out / "metrics.jsonl")] == [1, 2, 3]
