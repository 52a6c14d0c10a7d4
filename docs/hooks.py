"""MkDocs hooks: ship MathJax with the site, so its formulas render offline (no CDN).

MathJax 3 comes from the ``django-static-mathjax`` package (the docs extra; a
wheel of MathJax's own ``es5`` files, no Django needed). After the build, the
combined TeX-to-HTML component and what it loads on demand (TeX extensions,
the HTML output's fonts, the menu and the accessibility parts) are copied to
``javascripts/mathjax/`` in the site, where ``mkdocs.yml``'s
``extra_javascript`` loads it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import mathjax

MATHJAX = Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"
"""MathJax's ``es5`` folder in the installed package."""

SHIPPED = ("tex-chtml.js", "input", "output/chtml", "ui", "a11y", "adaptors", "sre")
"""The parts of it the site ships: the component and what it loads at run time."""


def on_post_build(config: dict, **_: object) -> None:
    target = Path(config["site_dir"]) / "javascripts" / "mathjax"
    for part in SHIPPED:
        source = MATHJAX / part
        if source.is_dir():
            shutil.copytree(source, target / part, dirs_exist_ok=True)
        else:
            (target / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / part)
