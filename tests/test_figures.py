"""The course's figures: ``docs/figures.py`` writes every PNG the pages show."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def load_figures():
    spec = importlib.util.spec_from_file_location("docs_figures", ROOT / "docs" / "figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_main_writes_every_figure_as_png(tmp_path):
    figures = load_figures()
    written = figures.main(tmp_path)
    expected = {tmp_path / name for name in figures.EXPECTED}
    assert set(written) == expected
    for path in expected:
        assert path.is_file(), path
        assert path.read_bytes()[:8] == PNG_MAGIC, path
    pages = "\n".join(page.read_text() for page in (ROOT / "docs" / "course").glob("*.md"))
    for name in figures.EXPECTED:
        assert f"../images/{name}" in pages, f"no course page shows {name}"
