#!/usr/bin/env bash
# Prints the path of the newest Python among 3.13 and 3.12 that runs and can make a venv, for
# `make test-newest-jax` (JAX's newest releases need Python >= 3.12; .venv keeps the floor's 3.11).
# Looks on PATH first, then under pyenv's versions ($PYENV_ROOT, else ~/.pyenv). A pyenv shim on PATH
# whose version is not selected answers "command not found" when run, so each candidate is run, not
# just found. Without one it says so on stderr and exits 1.
set -u
root="${PYENV_ROOT:-$HOME/.pyenv}"
for minor in 3.13 3.12; do
    candidates=()
    found=$(command -v "python$minor" 2>/dev/null) && candidates+=("$found")
    while IFS= read -r path; do candidates+=("$path"); done < <(ls -d "$root"/versions/"$minor".*/bin/python 2>/dev/null | sort -rV)
    for python in "${candidates[@]}"; do
        if "$python" -c "import sys, venv, ensurepip; sys.exit(sys.version_info[:2] != tuple(map(int, '$minor'.split('.'))))" \
            >/dev/null 2>&1; then
            echo "$python"
            exit 0
        fi
    done
done
echo "no Python 3.13 or 3.12 found: looked for python3.13/python3.12 on PATH and under $root/versions" >&2
echo "(install one, e.g. 'pyenv install 3.13', to test funcnn on the newest JAX)" >&2
exit 1
