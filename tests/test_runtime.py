"""Process set-up before JAX starts: the plan as a table, in-process; applying it, in a subprocess."""

import os
import subprocess
import sys

import pytest

from funcnn import runtime
from funcnn.runtime import CPU_CONVOLUTIONS, HUGE_PAGES, Facts, plan

COUNT = "--xla_force_host_platform_device_count"


@pytest.mark.parametrize(
    ("facts", "options", "environ", "devices", "reexec"),
    [
        # one CPU device per core, as many as divide the batch
        (Facts({}, cores=2), {"batch_size": 128}, {"JAX_NUM_CPU_DEVICES": "2", "XLA_FLAGS": CPU_CONVOLUTIONS,
                                                   "GLIBC_TUNABLES": HUGE_PAGES}, 2, True),
        (Facts({}, cores=8), {"batch_size": 100}, {"JAX_NUM_CPU_DEVICES": "5"}, 5, True),
        (Facts({}, cores=6), {}, {"JAX_NUM_CPU_DEVICES": "6"}, 6, True),  # no batch: every core
        (Facts({}, cores=1), {"batch_size": 128}, {"JAX_NUM_CPU_DEVICES": "1"}, 1, True),
        (Facts({}, cores=8), {"cpu_devices": 3}, {"JAX_NUM_CPU_DEVICES": "3"}, 3, True),
        (Facts({}, cores=8), {"cpu_devices": None}, {}, None, True),
        # two processes of a run on one machine share its cores; each takes its share of the batch
        (Facts({}, cores=8), {"batch_size": 128, "processes": 2, "coordinator": "127.0.0.1:1234"},
         {"JAX_NUM_CPU_DEVICES": "4"}, 4, True),
        (Facts({}, cores=8), {"batch_size": 96, "processes": 4}, {"JAX_NUM_CPU_DEVICES": "8"}, 8, True),
        (Facts({}, cores=8), {"batch_size": 96, "processes": 4, "coordinator": "10.0.0.1:1"},
         {"JAX_NUM_CPU_DEVICES": "8"}, 8, True),  # the coordinator elsewhere: this machine's cores are its own
        # the user's own settings win
        (Facts({"XLA_FLAGS": f"{COUNT}=6"}, cores=2), {"batch_size": 128}, {"XLA_FLAGS": f"{COUNT}=6 {CPU_CONVOLUTIONS}"},
         None, True),
        (Facts({"JAX_NUM_CPU_DEVICES": "3"}, cores=2), {}, {}, None, True),
        (Facts({"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type="}, cores=2), {}, {"XLA_FLAGS": None}, 2, True),
        (Facts({"GLIBC_TUNABLES": ""}, cores=2), {}, {"GLIBC_TUNABLES": None}, 2, False),
        (Facts({"XLA_FLAGS": "--xla_cpu_use_thunk_runtime=true"}, cores=2), {},
         {"XLA_FLAGS": f"--xla_cpu_use_thunk_runtime=true {CPU_CONVOLUTIONS}"}, 2, True),
        # too late, or not possible here
        (Facts({}, cores=4, jax_imported=True), {}, {"JAX_NUM_CPU_DEVICES": None, "XLA_FLAGS": None}, 4, False),
        (Facts({}, cores=4, jax_imported=True, backend_started=True), {}, {}, None, False),
        (Facts({}, cores=2, jaxlib=(0, 9, 2)), {}, {"XLA_FLAGS": None}, 2, True),  # XLA would abort on the flag
        (Facts({}, cores=2, jaxlib=()), {}, {"XLA_FLAGS": None}, 2, True),  # no jaxlib
        (Facts({}, cores=2, libc=""), {}, {"GLIBC_TUNABLES": None}, 2, False),
        (Facts({}, cores=2), {"huge_pages": False, "cpu_convolutions": False}, {"XLA_FLAGS": None, "GLIBC_TUNABLES": None},
         2, False),
    ],
)  # fmt: skip
def test_the_plan(facts, options, environ, devices, reexec):
    """``environ`` lists what the plan sets (``None``: leaves unset); others are not checked per row."""
    planned = plan(facts, **options)
    for name, value in environ.items():
        assert planned.environ.get(name) == value, name
    assert planned.cpu_devices == devices and planned.reexec == reexec


@pytest.mark.parametrize(
    ("facts", "why"),
    [
        (Facts({"XLA_FLAGS": f"{COUNT}=6"}, cores=2), "the environment sets a count"),
        (Facts({}, cores=2, jax_imported=True, backend_started=True), "JAX has started its backend"),
    ],
)
def test_an_explicit_count_that_cannot_apply_says_why(facts, why):
    assert plan(facts, cpu_devices=3).skipped == (f"3 CPU devices not set: {why}",)
    assert plan(facts, cpu_devices="auto").skipped == ()


@pytest.mark.parametrize(
    ("facts", "options", "threads"),
    [
        (Facts({}, cores=2), {"cpu_devices": 4}, "8"),  # the planned count
        (Facts({}, cores=2), {"batch_size": 128}, None),  # one device per core: the cores' pool
        (Facts({}, cores=8), {"cpu_devices": 3}, None),
        (Facts({"XLA_FLAGS": f"{COUNT}=8"}, cores=2), {}, "16"),  # a count the user set
        (Facts({"XLA_FLAGS": f"{COUNT}=8 {COUNT}=3"}, cores=2), {}, "6"),  # XLA reads the last
        (Facts({"XLA_FLAGS": f"{COUNT}=8", "JAX_NUM_CPU_DEVICES": "3"}, cores=2), {}, "6"),  # JAX's wins
        (Facts({"XLA_FLAGS": f"{COUNT}=8"}, cores=2), {"cpu_devices": None}, "16"),
        (Facts({"XLA_FLAGS": f"{COUNT}=8"}, cores=8), {}, None),
        (Facts({"JAX_NUM_CPU_DEVICES": "x"}, cores=1), {}, None),
        (Facts({}, cores=2, jax_imported=True), {"cpu_devices": 4}, "8"),  # read when the backend starts
        (Facts({}, cores=2, jax_imported=True, backend_started=True), {"cpu_devices": 4}, None),
        (Facts({"PJRT_NPROC": "3"}, cores=2), {"cpu_devices": 4}, None),  # the user's own
        (Facts({"NPROC": "3"}, cores=2), {"cpu_devices": 4}, None),
    ],
)  # fmt: skip
def test_the_plan_gives_devices_beyond_the_cores_a_spare_thread(facts, options, threads):
    """With one pool thread per device, XLA:CPU can deadlock an all-reduce on a busy machine; with
    at most one device per core the spare threads would slow every step, so the pool is left."""
    assert plan(facts, **options).environ.get("PJRT_NPROC") == threads


def test_cpu_devices_for():
    assert [runtime.cpu_devices_for(b, cores=4) for b in (128, 6, 7, 1)] == [4, 3, 1, 1]
    assert runtime.cpu_devices_for(128, 4, cores=8) == 8 and runtime.cpu_devices_for(96, 8, cores=8) == 6


@pytest.mark.parametrize(
    ("release", "expected"), [("0.10.2", (0, 10, 2)), ("0.11.0rc1", (0, 11, 0)), ("1.2", (1, 2)), ("dev", ())]
)
def test_jaxlib_version(monkeypatch, release, expected):
    monkeypatch.setattr(runtime.importlib.metadata, "version", lambda name: release)
    assert runtime.jaxlib_version() == expected


CONFIGURE = """
import os, sys
os.sched_getaffinity = lambda pid: set(range(3))
import funcnn.runtime
plan = funcnn.runtime.configure(batch_size=96, huge_pages=False)
import jax
print(plan.cpu_devices, jax.device_count(), os.environ["XLA_FLAGS"])
"""

CONFIGURE_AFTER_IMPORT = """
import os, sys
os.sched_getaffinity = lambda pid: set(range(3))
import jax
import funcnn.runtime
plan = funcnn.runtime.configure(batch_size=96, huge_pages=False)
print(plan.cpu_devices, jax.device_count(), os.environ.get("JAX_NUM_CPU_DEVICES"))
"""


@pytest.mark.parametrize(
    ("script", "expected"),
    [(CONFIGURE, f"3 3 {CPU_CONVOLUTIONS}"), (CONFIGURE_AFTER_IMPORT, "3 3 None")],
)
def test_configure_gives_a_script_what_the_command_line_gets(script, expected):
    """Before ``import jax`` through the environment; after it, through JAX's config."""
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == expected


REEXEC = """
import os, sys
import funcnn.runtime
funcnn.runtime.configure(cpu_devices=None, cpu_convolutions=False)
print(os.getpid(), os.environ.get("GLIBC_TUNABLES"), sys.argv[1:])
"""


def test_configure_re_executes_the_script_for_huge_pages(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(REEXEC)
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    done = subprocess.run(
        [sys.executable, str(script), "--x", "1"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split(" ", 1)[1].strip() == f"{HUGE_PAGES} ['--x', '1']"  # once, same arguments
