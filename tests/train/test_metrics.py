"""Metrics files: JSON lines written atomically and read back; the curves PNG."""

from funcnn.train import plot_curves, read_jsonl, write_jsonl


def test_jsonl_round_trip(tmp_path):
    records = [{"epoch": 1, "train_loss": 0.5, "test_loss": None}, {"epoch": 2, "train_loss": 0.25}]
    write_jsonl(tmp_path / "m.jsonl", records)
    assert read_jsonl(tmp_path / "m.jsonl") == records
    write_jsonl(tmp_path / "m.jsonl", records[:1])
    assert read_jsonl(tmp_path / "m.jsonl") == records[:1]


def test_curves_are_a_png_even_without_test_metrics(tmp_path):
    history = [{"epoch": e, "train_loss": 1.0 / e, "train_accuracy": 0.5, "test_loss": None} for e in (1, 2)]
    plot_curves(tmp_path / "curves.png", history)
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
