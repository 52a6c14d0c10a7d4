"""The documentation runs: every Python code block of every page, and the site builds.

Each page's ```` ```python ```` blocks run in order, in one namespace, in a
fresh process (a page may set ``XLA_FLAGS`` or enable float64 before JAX
starts) whose working directory is a temporary folder. The program keeps the
page's line numbers, so a traceback names the page and the line. A block is
skipped only when the line before its fence says why, as an HTML comment
that the site does not show: ``<!-- no-run: needs several hosts -->``.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import re
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from funcnn.data.fashion_mnist import DEFAULT_DIR

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "docs").rglob("*.md")) + [ROOT / "README.md"]
FENCE = re.compile(r"^(?P<indent> *)```(?P<info>[^`]*)$")


def python_blocks(page: Path) -> tuple[str, int, int]:
    """The page as a program: its runnable Python lines, every other line blank (so line numbers match);
    with the counts of runnable and skipped blocks."""
    lines = page.read_text().splitlines()
    program = [""] * len(lines)
    runnable = skipped = 0
    inside, indent, keep = False, "", False
    for number, line in enumerate(lines):
        fence = FENCE.match(line)
        if fence and not inside:
            inside, indent = True, fence["indent"]
            is_python = fence["info"].strip().split(" ")[0] in ("python", "py")
            previous = next((text.strip() for text in reversed(lines[:number]) if text.strip()), "")
            keep = is_python and not previous.startswith("<!-- no-run:")
            runnable += keep
            skipped += is_python and not keep
        elif fence and inside and fence["indent"] == indent and not fence["info"].strip():
            inside = keep = False
        elif inside and keep:
            program[number] = line[len(indent) :] if line.startswith(indent) else line.lstrip()
    return "\n".join(program) + "\n", runnable, skipped


PAGES_WITH_CODE = [page for page in PAGES if python_blocks(page)[1]]
SLOW = {"quickstart.md", "guides"}
"""Pages that train (several compiled ``fit`` calls, 15-25 s each on 2 cores): among the ``slow`` tests."""


def page_param(page: Path):
    slow = {page.name, page.parent.name} & SLOW
    return pytest.param(page, id=str(page.relative_to(ROOT)), marks=[pytest.mark.slow] if slow else [])


@pytest.mark.parametrize("page", [page_param(page) for page in PAGES_WITH_CODE])
def test_every_python_block_runs(page, tmp_path):
    program, _, _ = python_blocks(page)
    if "load_fashion_mnist" in program and not DEFAULT_DIR.is_dir() and "FUNCNN_DATA" not in os.environ:
        pytest.skip("dataset-fashion-mnist is not installed")
    script = tmp_path / "page.py"
    script.write_text(program)
    runner = (
        "import sys; exec(compile(open(sys.argv[1]).read(), sys.argv[2], 'exec'), {'__name__': '__main__'})"
    )
    env = {key: value for key, value in os.environ.items() if key != "XLA_FLAGS"}
    env["MPLBACKEND"] = "Agg"
    done = subprocess.run(
        [sys.executable, "-c", runner, str(script), str(page)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, f"{page}:\n{done.stderr[-3000:]}"


def test_the_collector_keeps_line_numbers_and_honours_no_run(tmp_path):
    page = tmp_path / "p.md"
    page.write_text(
        "text\n```python\nx = 1\n```\n<!-- no-run: needs two hosts -->\n```python\nboom()\n```\n"
        "- item\n\n    ```python\n    y = x + 1\n    ```\n```bash\nls\n```\n"
    )
    program, runnable, skipped = python_blocks(page)
    assert (runnable, skipped) == (2, 1)
    assert program.splitlines()[2] == "x = 1" and program.splitlines()[11] == "y = x + 1"
    assert "boom" not in program and "ls" not in program


PUBLIC_MODULES = (
    "funcnn.core",
    "funcnn.layers",
    "funcnn.combinators",
    "funcnn.ops",
    "funcnn.testing",
    "funcnn.shapes",
    "funcnn.labels",
    "funcnn.taps",
    "funcnn.filters",
    "funcnn.models",
    "funcnn.interop",
    "funcnn.export",
    "funcnn.train",
    "funcnn.data",
    "funcnn.checkpoint",
    "funcnn.distributed",
    "funcnn.runtime",
    "funcnn.settings",
    "funcnn.identity",
    "funcnn.interrupts",
)
"""The modules the API reference (``docs/api/``) documents, with every public name of each."""


def public_names(module_name: str) -> list[str]:
    """``__all__``, else the names the module itself defines without a leading underscore."""
    module = importlib.import_module(module_name)
    if hasattr(module, "__all__"):
        return list(module.__all__)
    return [
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and not inspect.ismodule(value)
        and getattr(value, "__module__", module_name) == module_name
    ]


def defined_at(module_name: str, name: str) -> str:
    """Where a public name is defined: ``funcnn.ops.conv`` the function is ``funcnn.ops.conv.conv``,
    documented under that name because the package's ``conv`` is also its submodule's name."""
    value = getattr(importlib.import_module(module_name), name)
    module, qualname = getattr(value, "__module__", None), getattr(value, "__qualname__", None)
    return f"{module}.{qualname}" if module and qualname else f"{module_name}.{name}"


def inventory(site: Path) -> set[str]:
    """The object names in mkdocstrings' ``objects.inv`` (four header lines, then zlib-compressed lines)."""
    data = (site / "objects.inv").read_bytes()
    body = zlib.decompress(data.split(b"\n", 4)[4]).decode()
    return {line.split(" ", 1)[0] for line in body.splitlines() if line.strip()}


def build_site(out: Path) -> subprocess.CompletedProcess:
    figures = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "figures.py"), str(ROOT / "docs" / "images")],
        capture_output=True,
        text=True,
        env={**os.environ, "MPLBACKEND": "Agg"},
    )
    assert figures.returncode == 0, figures.stderr[-3000:]
    mkdocs = Path(sys.executable).with_name("mkdocs")
    return subprocess.run(
        [str(mkdocs), "build", "--strict", "--site-dir", str(out)], cwd=ROOT, capture_output=True, text=True
    )


needs_docs_extra = pytest.mark.skipif(
    importlib.util.find_spec("mkdocstrings") is None or importlib.util.find_spec("mathjax") is None,
    reason="needs the docs extra",
)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The site, built once for this module's tests."""
    out = tmp_path_factory.mktemp("docs") / "site"
    built = build_site(out)
    assert built.returncode == 0, built.stderr[-5000:]
    return out


@needs_docs_extra
def test_the_site_builds_strictly_with_every_public_name_in_the_api_reference(site):
    tmp_path = site.parent
    documented = inventory(tmp_path / "site")
    missing = [f"{module}.{name}" for module in PUBLIC_MODULES for name in public_names(module)
               if not {f"{module}.{name}", defined_at(module, name)} & documented]  # fmt: skip
    assert not missing, f"public names without an entry in the API reference (docs/api/): {missing}"
    import funcnn

    top_level = [name for name in funcnn.__all__ if name not in ("filters", "labels", "models", "ops", "shapes")]
    assert all(f"{funcnn._MODULE_OF[name]}.{name}" in documented for name in top_level)
    for page in ["index", "quickstart", "course/convolution", "guides/performance", "api", "changelog"]:
        assert (tmp_path / "site" / page / "index.html").is_file() or page == "index"


@needs_docs_extra
def test_the_site_renders_its_math_offline(site):
    """MathJax ships with the site and no page loads a script or a style sheet from another site (a CDN,
    a font service); the course's formulas reach MathJax as arithmatex math."""
    pages = list(site.rglob("*.html"))
    assert pages
    for page in pages:
        html = page.read_text(encoding="utf-8")
        fetched = re.findall(r"<script[^>]+src=\"([^\"]+)\"", html)
        fetched += re.findall(r"<link[^>]+rel=\"stylesheet\"[^>]+href=\"([^\"]+)\"", html)
        assert not [url for url in fetched if "://" in url], (page, fetched)
    assert (site / "javascripts" / "mathjax" / "tex-chtml.js").is_file()
    assert (site / "javascripts" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2").is_dir()
    course = (site / "course" / "padding_stride" / "index.html").read_text(encoding="utf-8")
    assert 'src="../../javascripts/mathjax/tex-chtml.js"' in course
    assert '<div class="arithmatex">\\[' in course and '<span class="arithmatex">\\(' in course
    assert r"\left\lfloor \frac{n + 2p - f}{s} \right\rfloor + 1" in course


def test_the_examples_page_shows_every_example_script():
    page = (ROOT / "docs" / "examples.md").read_text(encoding="utf-8")
    scripts = sorted(path.name for path in (ROOT / "examples").glob("*.py"))
    assert scripts
    missing = [name for name in scripts if f'--8<-- "examples/{name}"' not in page or f"## `{name}`" not in page]
    assert not missing, f"examples without a section and their source in docs/examples.md: {missing}"


@needs_docs_extra
def test_the_api_reference_renders_examples_as_code_and_cross_links(site):
    """Docstring examples sit under ``Examples:`` and render as code, never as the nested blockquotes
    bare ``>>>`` lines become; no Sphinx role (``:func:`x```) is left raw: they are mkdocstrings
    cross-references, which link. Every layer's ``Shapes:`` section renders as its own block."""
    import funcnn.layers

    api = "".join(page.read_text(encoding="utf-8") for page in (site / "api").rglob("index.html"))
    quoted = re.findall(r"<blockquote>.*?</blockquote>", api, re.S)
    assert not [q for q in quoted if "&gt;&gt;&gt;" in q]
    assert api.count("&gt;&gt;&gt;") > 0 and 'class="autorefs' in api
    layers = "".join(page.read_text(encoding="utf-8") for page in (site / "api").glob("layers_*/index.html"))
    constructors = [name for name in public_names("funcnn.layers") if inspect.isfunction(getattr(funcnn.layers, name))]
    assert layers.count("<summary>Shapes</summary>") == len(constructors) > 30  # each layer's Shapes, rendered
    for page in site.rglob("*.html"):
        text = re.sub(r"<[^>]+>", "", page.read_text(encoding="utf-8"))
        roles = re.findall(r":(?:func|class|data|mod|meth|attr|exc|obj|ref):`[^`]*`", text)
        assert not roles, (page, roles[:5])


def test_docstring_examples_are_under_an_examples_section():
    """Every ``>>>`` line of the package's docstrings follows an ``Examples:`` title (same block)."""
    bare = []
    for path in sorted((ROOT / "funcnn").rglob("*.py")):
        lines = path.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines):
            if line.lstrip().startswith(">>> "):
                block_start = number
                while block_start > 0 and lines[block_start - 1].strip():
                    block_start -= 1
                if lines[block_start - 1].strip() != "Examples:" and lines[block_start].strip() != "Examples:":
                    bare.append(f"{path.relative_to(ROOT)}:{number + 1}")
    assert not bare, f"doctest lines outside an Examples: section: {bare[:10]}"


def test_every_public_module_has_a_page_of_the_api_reference():
    """One page per module or topic (``docs/api/*.md``), every public module on one, every page in the
    overview's table and in the navigation."""
    pages = {path.stem: path.read_text(encoding="utf-8") for path in (ROOT / "docs" / "api").glob("*.md")}
    for module in PUBLIC_MODULES:
        assert any(re.search(rf"^::: {re.escape(module)}$", text, re.M) for text in pages.values()), module
    overview, nav = pages.pop("index"), (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    assert len(pages) > 10
    for stem in pages:
        assert f"]({stem}.md)" in overview and f"api/{stem}.md" in nav, stem


@needs_docs_extra
def test_each_object_of_the_api_reference_is_on_one_page(site):
    """The pages split the reference: no object's entry (its heading's anchor) is on two of them."""
    pages_of: dict[str, list[str]] = {}
    for page in (site / "api").rglob("index.html"):
        for anchor in set(re.findall(r'<h[1-6] id="(funcnn[^"]*)"', page.read_text(encoding="utf-8"))):
            pages_of.setdefault(anchor, []).append(page.parent.name)
    assert len(pages_of) > 300
    assert not {anchor: pages for anchor, pages in pages_of.items() if len(pages) > 1}
