"""The settings table and the merge of a run's settings on --resume."""

import argparse

import pytest

from funcnn.settings import SETTINGS, TRAIN_DEFAULTS, SettingsConflictError, UsageError, check_stored, merge

STORED = TRAIN_DEFAULTS | {"data": "/data/a.npz", "input_shape": [-1, 28, 28, 1], "num_classes": 10}


def test_a_fresh_run_is_the_defaults_and_what_is_given():
    assert merge({"lr": 0.1}) == TRAIN_DEFAULTS | {"lr": 0.1}


def test_run_json_wins_over_the_checkpoint_where_a_run_may_go_on():
    recorded = STORED | {"epochs": 20, "data": "/moved/a.npz"}  # an extension, the same data moved
    merged = merge({}, ("OUT/run.json", recorded), ("checkpoint step 8", STORED))
    assert merged["epochs"] == 20 and merged["data"] == "/moved/a.npz"
    assert merge({"epochs": 30}, ("OUT/run.json", recorded), ("checkpoint step 8", STORED))["epochs"] == 30


@pytest.mark.parametrize(
    ("edit", "pattern"),
    [
        ({"lr": 0.01}, r"^OUT/run\.json disagrees with checkpoint step 8: lr 0\.01 \(the checkpoint: 0\.001\); restore"),
        ({"epochs": 5}, r"epochs 5 \(the checkpoint: 10\)"),
        ({"augment": True}, r"augment True \(the checkpoint: False\)"),
    ],
)
def test_run_json_against_its_checkpoint_names_the_file_the_setting_and_both_values(edit, pattern):
    with pytest.raises(SettingsConflictError, match=pattern):
        merge({}, ("OUT/run.json", STORED | edit), ("checkpoint step 8", STORED))


@pytest.mark.parametrize(
    ("given", "pattern"),
    [
        ({"lr": 0.1}, r"^cannot resume with different settings: --lr 0\.1 \(OUT/run\.json: 0\.001\)$"),
        ({"epochs": 5}, r"--epochs 5 \(OUT/run\.json: 10\)"),
        ({"batch_size": 64, "seed": 3}, r"--batch-size 64 \(OUT/run\.json: 128\), --seed 3 \(OUT/run\.json: 0\)"),
    ],
)
def test_a_setting_given_against_the_run_names_its_source(given, pattern):
    with pytest.raises(UsageError, match=pattern):
        merge(given, ("OUT/run.json", STORED))


@pytest.mark.parametrize(
    ("stored", "pattern"),
    [
        ({}, r"^src holds no settings of `funcnn train`$"),
        ([1], r"^src holds no settings of `funcnn train`$"),
        (STORED | {"epochs": True}, r"epochs=True \(must be a positive integer\)"),
        (STORED | {"model": "vgg"}, r"model='vgg' \(must be one of fashion_mnist_cnn, "),
        ({k: v for k, v in STORED.items() if k != "seed"}, r"seed=<missing>"),
    ],
)
def test_stored_settings_are_checked_by_the_table(stored, pattern):
    with pytest.raises(SettingsConflictError, match=pattern):
        check_stored("src", stored)


def test_every_option_parses_what_is_valid():
    for setting in SETTINGS.values():
        assert setting.kind.valid(setting.default) or setting.default is None
    assert SETTINGS["lr"].kind.parse("0.5") == 0.5 and SETTINGS["model"].option == "--model"


NEW = ("ema", "patience", "keep_best", "tensorboard")


def test_a_run_written_before_the_newer_settings_resumes_with_their_defaults():
    older = {name: value for name, value in STORED.items() if name not in NEW}
    assert check_stored("src", older) == STORED
    assert {name: STORED[name] for name in NEW} == {
        "ema": None, "patience": None, "keep_best": True, "tensorboard": False,
    }  # fmt: skip


def test_patience_keep_best_and_tensorboard_may_change_on_resume_but_not_the_ema():
    run = ("OUT/run.json", STORED | {"ema": 0.9, "patience": 2})
    changed = {"patience": 5, "keep_best": False, "tensorboard": True}
    assert merge(changed, run) == STORED | {"ema": 0.9} | changed
    assert merge({}, ("OUT/run.json", STORED | changed), ("checkpoint step 8", STORED))["patience"] == 5
    with pytest.raises(
        UsageError, match=r"^cannot resume with different settings: --ema 0\.5 \(OUT/run\.json: 0\.9\)$"
    ):
        merge({"ema": 0.5}, run)
    with pytest.raises(UsageError, match=r"--ema 0\.9 \(OUT/run\.json: None\)"):
        merge({"ema": 0.9}, ("OUT/run.json", STORED))
    with pytest.raises(SettingsConflictError, match=r"ema 0\.9 \(the checkpoint: None\)"):
        merge({}, run, ("checkpoint step 8", STORED))


@pytest.mark.parametrize("text", ["0", "1", "1.5", "-0.1", "nan", "x"])
def test_an_ema_decay_outside_zero_to_one_is_refused(text):
    with pytest.raises(argparse.ArgumentTypeError, match=r"must be a number between 0 and 1 \(exclusive\)"):
        SETTINGS["ema"].kind.parse(text)
    assert SETTINGS["ema"].kind.parse("0.999") == 0.999 and not SETTINGS["ema"].kind.valid(1.0)
