"""``python -m build`` makes a wheel and an sdist that install into a fresh venv and import."""

import subprocess
import sys
import sysconfig
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

import funcnn

ROOT = Path(__file__).resolve().parents[1]


def fresh_venv(path: Path) -> Path:
    """A new venv whose site-packages also sees this environment's dependencies (jax, optax, ...)
    through a path file, so only funcnn itself comes from what is installed into it."""
    venv.create(path, with_pip=True)
    python = path / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    (Path(site) / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


@pytest.mark.slow
def test_wheel_and_sdist_install_into_a_fresh_venv_and_import(tmp_path):
    dist = tmp_path / "dist"
    built = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(dist), str(ROOT)], capture_output=True, text=True
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = dist.glob(f"funcnn-{funcnn.__version__}-py3-none-any.whl")
    (sdist,) = dist.glob(f"funcnn-{funcnn.__version__}.tar.gz")
    names = zipfile.ZipFile(wheel).namelist()
    assert "funcnn/__init__.py" in names and "funcnn/ops/conv.py" in names
    assert not any(name.startswith(("tests/", "benchmarks/", "examples/", "docs/")) for name in names)
    with tarfile.open(sdist) as archive:
        members = {
            Path(name).relative_to(f"funcnn-{funcnn.__version__}").as_posix() for name in archive.getnames()
        }
    assert {"pyproject.toml", "README.md", "funcnn/__init__.py"} <= members

    for name, artefact in [("wheel", wheel), ("sdist", sdist)]:
        python = fresh_venv(tmp_path / name)
        installed = subprocess.run(
            [python, "-m", "pip", "install", "--quiet", "--no-deps", str(artefact)],
            capture_output=True,
            text=True,
        )
        assert installed.returncode == 0, installed.stderr[-3000:]
        probe = (
            "import importlib.metadata, jax, funcnn as fn; "
            "print(fn.__file__, fn.__version__, importlib.metadata.version('funcnn')); "
            "print(fn.models.fashion_mnist_cnn().init(jax.random.key(0), fn.models.INPUT_SHAPE)[0])"
        )
        done = subprocess.run([python, "-c", probe], capture_output=True, text=True, cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
        where, version, metadata = done.stdout.splitlines()[0].split()
        assert where.startswith(str(tmp_path / name)), where  # this venv's copy, not the checkout
        assert version == metadata == funcnn.__version__
        assert done.stdout.splitlines()[1] == "(-1, 10)"
        script = subprocess.run([python.parent / "funcnn", "--version"], capture_output=True, text=True)
        assert script.stdout.strip() == f"funcnn {funcnn.__version__}"
