"""Checkpoints: round trips, the last N kept, clear mismatch errors, no NaN saved, interrupted writes ignored."""

import doctest
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import funcnn.checkpoint
from funcnn.checkpoint import (
    CheckpointError,
    CheckpointMismatchError,
    CheckpointNotFoundError,
    all_steps,
    latest_step,
    read_metadata,
    restore,
    save,
)


def tree(width=4):
    params = {
        "conv": {"kernel": jnp.arange(3.0 * width).reshape(3, width), "bias": jnp.zeros(width)},
        "pool": (),
    }
    return {
        "params": params,
        "opt": optax.adam(1e-3).init(params),
        "step": jnp.int32(7),
        "key": jax.random.key(42),
    }


def leaves_equal(a, b):
    unwrap = lambda x: jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x  # noqa: E731
    return all(
        np.array_equal(unwrap(x), unwrap(y))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


def test_round_trip_keeps_structure_dtypes_keys_and_metadata(tmp_path):
    saved = tree()
    save(tmp_path, 5, saved, {"epoch": 2, "history": [{"loss": 0.5}]})
    target = jax.tree.map(jnp.zeros_like, saved)
    restored, meta = restore(tmp_path, target)
    assert jax.tree.structure(restored) == jax.tree.structure(saved)
    assert leaves_equal(restored, saved)
    assert jax.random.key_data(restored["key"]).tolist() == jax.random.key_data(saved["key"]).tolist()
    assert meta == {"epoch": 2, "history": [{"loss": 0.5}]}
    assert read_metadata(tmp_path) == meta


def test_restores_into_an_abstract_target_on_the_first_device(tmp_path):
    saved = tree()
    save(tmp_path, 5, saved)
    restored, _ = restore(tmp_path, jax.eval_shape(lambda: saved))
    assert leaves_equal(restored, saved)
    assert all(leaf.devices() == {jax.devices()[0]} for leaf in jax.tree.leaves(restored))


def test_keeps_the_last_n_and_restores_any_of_them(tmp_path):
    for step in range(1, 6):
        save(tmp_path, step, {"w": jnp.full(2, float(step))}, {"step": step}, keep=3)
    assert all_steps(tmp_path) == [3, 4, 5] and latest_step(tmp_path) == 5
    restored, meta = restore(tmp_path, {"w": jnp.zeros(2)}, step=4)
    np.testing.assert_array_equal(restored["w"], [4.0, 4.0])
    assert meta == {"step": 4}


def test_empty_or_missing_directory_has_no_latest_step(tmp_path):
    assert latest_step(tmp_path / "missing") is None
    assert not (tmp_path / "missing").exists()
    assert latest_step(tmp_path) is None
    with pytest.raises(CheckpointNotFoundError, match=re.escape(f"{tmp_path}: no complete checkpoint found")):
        restore(tmp_path, {"w": jnp.zeros(2)})


def test_missing_step_is_named(tmp_path):
    save(tmp_path, 3, {"w": jnp.zeros(2)})
    with pytest.raises(CheckpointNotFoundError, match=r"no checkpoint for step 9 \(saved steps: \[3\]\)"):
        restore(tmp_path, {"w": jnp.zeros(2)}, step=9)


def test_shape_mismatch_names_directory_step_and_leaf(tmp_path):
    save(tmp_path, 3, tree(4))
    message = re.escape(f"{tmp_path}: checkpoint step 3 does not match the target pytree: ") + (
        r".*params\.conv\.kernel: checkpoint has shape \(3, 4\) float32, target \(3, 5\) float32"
    )
    with pytest.raises(CheckpointMismatchError, match=message):
        restore(tmp_path, tree(5))


def test_structure_mismatch_lists_missing_and_extra_leaves(tmp_path):
    save(tmp_path, 3, {"a": jnp.zeros(2), "b": jnp.zeros(3)})
    with pytest.raises(
        CheckpointMismatchError, match=r"missing in checkpoint: c \(2,\); not in target: b \(3,\)"
    ):
        restore(tmp_path, {"a": jnp.zeros(2), "c": jnp.zeros(2)})


def test_dtype_mismatch_is_reported(tmp_path):
    save(tmp_path, 3, {"a": jnp.zeros(2)})
    with pytest.raises(
        CheckpointMismatchError, match=r"a: checkpoint has shape \(2,\) float32, target \(2,\) int32"
    ):
        restore(tmp_path, {"a": jnp.zeros(2, jnp.int32)})


def test_non_finite_state_is_never_saved(tmp_path):
    save(tmp_path, 1, {"w": jnp.ones(2)})
    with pytest.raises(CheckpointError, match=r"refusing to save step 2: non-finite values in w"):
        save(tmp_path, 2, {"w": jnp.array([1.0, jnp.inf])})
    assert all_steps(tmp_path) == [1]


@pytest.mark.parametrize("keep", [0, -1])
def test_keep_must_be_positive_so_the_new_checkpoint_stays(tmp_path, keep):
    save(tmp_path, 1, {"w": jnp.ones(2)})
    with pytest.raises(CheckpointError, match=rf"`keep` must be a positive integer, got {keep}"):
        save(tmp_path, 2, {"w": jnp.ones(2)}, keep=keep)
    assert all_steps(tmp_path) == [1]


def test_steps_must_increase(tmp_path):
    save(tmp_path, 4, {"w": jnp.ones(2)})
    with pytest.raises(CheckpointError, match="cannot save step 4: step 4 is already saved"):
        save(tmp_path, 4, {"w": jnp.ones(2)})


def test_an_interrupted_write_is_ignored_then_cleaned_up(tmp_path):
    save(tmp_path, 1, {"w": jnp.ones(2)})
    leftover = tmp_path / "2.orbax-checkpoint-tmp"
    (leftover / "state").mkdir(parents=True)
    (leftover / "state" / "partial").write_bytes(b"\x00" * 10)
    assert all_steps(tmp_path) == [1]
    restored, _ = restore(tmp_path, {"w": jnp.zeros(2)})
    np.testing.assert_array_equal(restored["w"], [1.0, 1.0])
    save(tmp_path, 2, {"w": jnp.full(2, 2.0)})
    assert all_steps(tmp_path) == [1, 2]
    assert not any("tmp" in p.name for p in tmp_path.iterdir())


def test_errors_are_value_errors():
    assert issubclass(CheckpointMismatchError, ValueError)
    assert issubclass(CheckpointNotFoundError, FileNotFoundError)


def test_docstring_example():
    assert doctest.testmod(funcnn.checkpoint).failed == 0


# --- integrity: manifests, digests, fallback, damaged steps moved aside -------------------


def _saved(tmp_path, steps=(1, 2)):
    for step in steps:
        save(tmp_path, step, tree(), {"epoch": step})
    return tmp_path


def _array_files(directory, step):
    return sorted(
        p for p in (directory / str(step) / "state").rglob("*") if p.is_file() and p.stat().st_size > 64
    )


def test_every_step_has_a_manifest_and_restoring_changes_no_file(tmp_path):
    directory = _saved(tmp_path)
    manifest = (directory / "2" / funcnn.checkpoint.MANIFEST).read_text()
    assert '"format": 1' in manifest and "sha256" in manifest
    restore(directory, tree())
    assert funcnn.checkpoint.problems(directory, 2) == []


def test_flipped_bytes_are_detected_and_never_restored(tmp_path):
    directory = _saved(tmp_path)
    victim = _array_files(directory, 2)[0]
    data = bytearray(victim.read_bytes())
    data[-64:] = bytes(b ^ 0xFF for b in data[-64:])
    victim.write_bytes(bytes(data))
    with pytest.raises(
        funcnn.checkpoint.CheckpointDamagedError,
        match=rf"checkpoint step 2 is damaged: file {re.escape(str(victim.relative_to(directory / '2')))} does not match its SHA-256 digest",
    ):
        restore(directory, tree())
    with pytest.raises(funcnn.checkpoint.CheckpointDamagedError, match="checkpoint step 2 is damaged"):
        read_metadata(directory)
    assert funcnn.checkpoint.latest_intact_step(directory)[0] == 1


def test_truncated_and_missing_files_are_named(tmp_path):
    directory = _saved(tmp_path)
    victim = _array_files(directory, 2)[0]
    victim.write_bytes(victim.read_bytes()[:10])
    step, damaged = funcnn.checkpoint.latest_intact_step(directory)
    assert step == 1 and damaged[0][0] == 2 and "bytes, not" in damaged[0][1] and "truncated" in damaged[0][1]
    victim.unlink()
    assert funcnn.checkpoint.problems(directory, 2)[0].endswith("is missing")


def test_unknown_format_or_missing_manifest_is_not_intact(tmp_path):
    directory = _saved(tmp_path)
    manifest = directory / "2" / funcnn.checkpoint.MANIFEST
    manifest.write_text(manifest.read_text().replace('"format": 1', '"format": 99'))
    assert "format version 99 is not 1" in funcnn.checkpoint.problems(directory, 2)[0]
    manifest.write_text("{not json")
    assert "is unreadable" in funcnn.checkpoint.problems(directory, 2)[0]
    manifest.unlink()
    manifest.mkdir()  # an OS error reading it (a folder, no permission): unreadable, not a crash
    assert "is unreadable (IsADirectoryError" in funcnn.checkpoint.problems(directory, 2)[0]
    assert funcnn.checkpoint.latest_intact_step(directory)[0] == 1
    manifest.rmdir()
    assert "has no funcnn-manifest.json" in funcnn.checkpoint.problems(directory, 2)[0]


def test_damaged_steps_are_moved_aside_never_deleted(tmp_path):
    directory = _saved(tmp_path / "checkpoints")
    (directory / "2" / funcnn.checkpoint.MANIFEST).unlink()
    moved = funcnn.checkpoint.move_aside(directory, 2)
    assert moved == tmp_path / funcnn.checkpoint.DAMAGED / "2" and moved.is_dir()
    assert all_steps(directory) == [1]
    save(directory, 2, tree(), {"epoch": 2})  # the step can be written again
    assert funcnn.checkpoint.latest_intact_step(directory) == (2, [])


def test_no_intact_checkpoint_at_all(tmp_path):
    directory = _saved(tmp_path, steps=(1,))
    (directory / "1" / funcnn.checkpoint.MANIFEST).unlink()
    step, damaged = funcnn.checkpoint.latest_intact_step(directory)
    assert step is None and [s for s, _ in damaged] == [1]


def test_restore_part_reads_only_the_requested_entries(tmp_path):
    directory = _saved(tmp_path)
    full = tree()
    part, meta = funcnn.checkpoint.restore_part(directory, {"params": full["params"], "step": full["step"]})
    assert set(part) == {"params", "step"} and meta == {"epoch": 2}
    assert leaves_equal(part["params"], full["params"])
    wrong = {"params": jax.tree.map(lambda a: a[None], full["params"])}
    with pytest.raises(
        CheckpointMismatchError, match=r"checkpoint step 2 does not match the requested part: params\."
    ):
        funcnn.checkpoint.restore_part(directory, wrong)
    victim = _array_files(directory, 2)[0]
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0xFF
    victim.write_bytes(bytes(data))
    with pytest.raises(funcnn.checkpoint.CheckpointDamagedError, match="checkpoint step 2 is damaged"):
        funcnn.checkpoint.restore_part(directory, {"params": full["params"]})


def test_leaves_on_different_devices_are_checked_where_they_live(tmp_path):
    first, second = jax.devices()[:2]
    tree = {"a": jax.device_put(jnp.ones(3), first), "b": jax.device_put(jnp.array([1.0, jnp.nan]), second)}
    assert funcnn.checkpoint.non_finite_paths(tree) == ["b"]
    tree["b"] = jax.device_put(jnp.zeros(2), second)
    save(tmp_path, 1, tree)
    assert latest_step(tmp_path) == 1


@pytest.mark.parametrize(
    ("keep", "pruned"), [(0, [2, 6, 8, 10]), (1, [2, 6, 8]), (3, [2]), (4, [2]), (5, []), (9, [])]
)
def test_prunable_keeps_the_newest_keep_steps_and_the_protected_ones(keep, pruned):
    assert funcnn.checkpoint.prunable([2, 4, 6, 8, 10], keep, protect={4}) == pruned
