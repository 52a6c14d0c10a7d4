"""Process set-up before JAX starts: the settings ``funcnn train`` runs under, for any script.

This module imports no JAX. [`plan`][funcnn.runtime.plan] is pure: from the facts of a process
([`Facts`][funcnn.runtime.Facts]: its environment, cores, C library, jaxlib version, whether
JAX is imported and its backend started) it decides what to set; [`apply`][funcnn.runtime.apply]
sets it, and [`configure`][funcnn.runtime.configure] does both for the running process::

    import funcnn.runtime
    funcnn.runtime.configure(batch_size=128)  # before `import jax`
    import jax

The plan has four parts, each skipped where the user already chose:

- **One CPU device per core** (``JAX_NUM_CPU_DEVICES``, or
  ``jax.config.update("jax_num_cpu_devices", n)`` when JAX is imported but has
  not started its backend). XLA:CPU runs each convolution on one core, so a
  data-parallel step over one device per core is how a step uses them all. The
  count is the largest one not above this process's cores (its share when the
  run's coordinator is on this machine, a loopback address, so all its processes
  are) whose product with the process count divides the batch. A device count in
  ``XLA_FLAGS`` or ``JAX_NUM_CPU_DEVICES`` wins.
- **XLA:CPU's own convolutions** ([`CPU_CONVOLUTIONS`][funcnn.runtime.CPU_CONVOLUTIONS] in ``XLA_FLAGS``):
  jaxlib 0.10 hands each convolution to YNNPACK, whose weight gradient on an AVX2 CPU runs at about half
  XLA:CPU's rate (the CIFAR-shaped benchmark net trains 1.2-1.5x faster without it; ``benchmarks/README.md``).
  Only with a jaxlib from [`CPU_CONVOLUTIONS_SINCE`][funcnn.runtime.CPU_CONVOLUTIONS_SINCE] on (XLA aborts on
  a flag it lacks), and only before JAX is imported (XLA reads its flags once).
- **A spare thread per CPU device where the devices outnumber the cores**
  (``PJRT_NPROC`` = twice the device count): XLA:CPU runs the devices'
  programs on a pool of ``max(cores, devices)`` threads, and the launch of a
  program dispatched while earlier ones still run can wait inside one of those
  threads. With exactly one thread per device, waiting launches can hold the
  threads that the running program's all-reduce needs, and XLA aborts the
  process after 40 s: 8 devices on 2 busy cores aborted in 6 of 8 tries, 0 of
  8 with the spare threads. ``PJRT_NPROC`` also sizes the pool that runs
  each operation's parallel parts, so with at most one device per core (the
  default) it is left alone: there the spare threads cost 15% of a training
  epoch (2 devices on 2 cores, 18.4 s against 21.5 s) and no abort was seen.
  Skipped when ``PJRT_NPROC`` or ``NPROC`` is set or JAX's backend has started.
- **Huge pages for malloc** (``GLIBC_TUNABLES`` = [`HUGE_PAGES`][funcnn.runtime.HUGE_PAGES]): XLA:CPU
  allocates a step's buffers afresh on every call, and the page faults of fresh
  ``mmap`` blocks cost about a tenth of a CIFAR-shaped step. glibc reads its
  tunables only at start, so this one re-executes the process (same id, same
  arguments); only on glibc, before JAX is imported, and when a command line to
  re-execute is given.
"""

from __future__ import annotations

import importlib.metadata
import itertools
import os
import platform
import sys
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

HUGE_PAGES = "glibc.malloc.hugetlb=1"
"""The ``GLIBC_TUNABLES`` value of the plan: malloc's large blocks on transparent huge pages."""

CPU_CONVOLUTIONS = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"
"""The ``XLA_FLAGS`` entry of the plan: XLA:CPU's convolutions rather than YNNPACK's."""

CPU_CONVOLUTIONS_SINCE = (0, 10, 1)
"""The oldest jaxlib known to have the flag of [`CPU_CONVOLUTIONS`][funcnn.runtime.CPU_CONVOLUTIONS]."""

DEVICE_COUNT_FLAG = "--xla_force_host_platform_device_count"
"""The ``XLA_FLAGS`` entry by which a user sets the CPU device count themselves."""

POOL_THREADS = "PJRT_NPROC"
"""The variable XLA:CPU sizes its thread pools by (the cores when unset)."""


class Facts(NamedTuple):
    """What the plan depends on, read from a process by [`facts`][funcnn.runtime.facts] (or written out in a
    test).

    Attributes:
      environ: the environment variables.
      cores: the cores the process may run on.
      libc: the C library's name (``"glibc"`` or ``""``).
      jaxlib: the installed jaxlib's ``(major, minor, patch)``; ``()`` if none.
      jax_imported: whether ``jax`` is imported.
      backend_started: whether JAX has started a backend (its device count is then fixed).
    """

    environ: Mapping[str, str]
    cores: int
    libc: str = "glibc"
    jaxlib: tuple[int, ...] = (0, 10, 2)
    jax_imported: bool = False
    backend_started: bool = False


class Plan(NamedTuple):
    """What [`apply`][funcnn.runtime.apply] sets.

    Attributes:
      environ: environment variables to set, name to value.
      cpu_devices: the CPU device count to give JAX, or ``None`` to leave it.
      reexec: whether to re-execute the process (for ``GLIBC_TUNABLES``).
      skipped: why a requested part is left alone, one sentence each.
    """

    environ: dict[str, str]
    cpu_devices: int | None
    reexec: bool
    skipped: tuple[str, ...]


def cpu_devices_for(batch: int, processes: int = 1, *, cores: int) -> int:
    """The most CPU devices per process, up to ``cores``, that split a global ``batch`` evenly
    over ``processes`` processes; at least 1.

    Args:
      batch: the global batch size, split over every device of every process.
      processes: the processes of the run, each with the same device count.
      cores: the most devices to return: the cores this process may use (below 1 counts as 1).

    Returns:
      The largest ``d`` from 1 to ``max(cores, 1)`` such that ``d * processes`` divides ``batch``;
      1 when none does.

    Examples:
        >>> cpu_devices_for(128, cores=6), cpu_devices_for(100, cores=3), cpu_devices_for(7, cores=4)
        (4, 2, 1)
    """
    return max(d for d in range(1, max(cores, 1) + 1) if batch % (d * processes) == 0 or d == 1)


def plan(
    facts: Facts,
    *,
    batch_size: int | None = None,
    cpu_devices: int | str | None = "auto",
    processes: int = 1,
    coordinator: str | None = None,
    cpu_convolutions: bool = True,
    huge_pages: bool = True,
) -> Plan:
    """Decide the set-up for a process with these ``facts``; pure.

    Args:
      facts: the process ([`facts`][funcnn.runtime.facts]).
      batch_size: the global batch the devices split; ``None`` for any (one device per core).
      cpu_devices: ``"auto"`` (one per core, dividing the batch), a count, or ``None`` to leave it.
      processes: the processes of the run (each gets its share of the batch).
      coordinator: process 0's ``HOST:PORT`` in a multi-process run; when it is this machine
        (a loopback address), every process of the run shares this machine's cores.
      cpu_convolutions: use XLA:CPU's convolutions ([`CPU_CONVOLUTIONS`][funcnn.runtime.CPU_CONVOLUTIONS]).
      huge_pages: put malloc's large blocks on huge pages ([`HUGE_PAGES`][funcnn.runtime.HUGE_PAGES]).

    Returns:
      The [`Plan`][funcnn.runtime.Plan]; parts the user set themselves or that are too late are
      left out, and ``skipped`` says why when the part was asked for explicitly.
    """
    environ: dict[str, str] = {}
    skipped: list[str] = []
    flags = facts.environ.get("XLA_FLAGS", "")
    count = None
    if cpu_devices is not None:
        user_count = DEVICE_COUNT_FLAG in flags or "JAX_NUM_CPU_DEVICES" in facts.environ
        if user_count or facts.backend_started:
            if cpu_devices != "auto":
                why = (
                    "JAX has started its backend" if facts.backend_started else "the environment sets a count"
                )
                skipped.append(f"{cpu_devices} CPU devices not set: {why}")
        elif cpu_devices == "auto":
            cores = max(facts.cores // _processes_here(coordinator, processes), 1)
            count = cpu_devices_for(batch_size or 1, processes, cores=cores) if batch_size else cores
        else:
            count = int(cpu_devices)
        if count is not None and not facts.jax_imported:
            environ["JAX_NUM_CPU_DEVICES"] = str(count)
    devices = count or _user_device_count(facts.environ)
    if (
        devices > facts.cores
        and not facts.backend_started
        and not {POOL_THREADS, "NPROC"} & set(facts.environ)
    ):
        environ[POOL_THREADS] = str(2 * devices)
    flag_name = CPU_CONVOLUTIONS.split("=")[0]
    if (
        cpu_convolutions
        and flag_name not in flags
        and not facts.jax_imported
        and facts.jaxlib >= CPU_CONVOLUTIONS_SINCE
    ):
        environ["XLA_FLAGS"] = f"{flags} {CPU_CONVOLUTIONS}".strip()
    reexec = (
        huge_pages
        and "GLIBC_TUNABLES" not in facts.environ
        and facts.libc == "glibc"
        and not facts.jax_imported
    )
    if reexec:
        environ["GLIBC_TUNABLES"] = HUGE_PAGES
    return Plan(environ, count, reexec, tuple(skipped))


def _user_device_count(environ: Mapping[str, str]) -> int:
    """The CPU device count the environment sets (``JAX_NUM_CPU_DEVICES`` wins over
    ``XLA_FLAGS``, as in JAX); 1 if neither does."""
    counts = [environ.get("JAX_NUM_CPU_DEVICES", "")]
    counts += [flag.split("=", 1)[1] for flag in environ.get("XLA_FLAGS", "").split()[::-1]
               if flag.startswith(DEVICE_COUNT_FLAG + "=")]  # fmt: skip
    return next((int(count) for count in counts if count.isdigit()), 1)


def _processes_here(coordinator: str | None, processes: int) -> int:
    """Processes of a run sharing this machine's cores: all of them when the coordinator is local."""
    if coordinator and coordinator.rsplit(":", 1)[0] in ("127.0.0.1", "localhost", "::1", "[::1]"):
        return max(processes, 1)
    return 1


def facts() -> Facts:
    """The facts of this process.

    Returns:
      Its [`Facts`][funcnn.runtime.Facts]: a copy of ``os.environ``; the cores of its CPU affinity
      (``os.cpu_count()`` where that cannot be read); ``platform.libc_ver()``'s library name;
      [`jaxlib_version`][funcnn.runtime.jaxlib_version]; whether ``jax`` is imported, and whether it
      has started a backend.
    """
    jax_module = sys.modules.get("jax")
    started = False
    if jax_module is not None:
        bridge = sys.modules.get("jax._src.xla_bridge")
        started = bool(getattr(bridge, "_backends", None))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return Facts(
        environ=dict(os.environ),
        cores=cores,
        libc=platform.libc_ver()[0],
        jaxlib=jaxlib_version(),
        jax_imported=jax_module is not None,
        backend_started=started,
    )


def apply(the_plan: Plan, argv: Sequence[str] | None = None) -> None:
    """Set ``the_plan`` in this process: its environment, then the device count in JAX's config
    when JAX is imported, then (with ``argv``, the command line to run again) the re-execution.

    Args:
      the_plan: what to set, a [`Plan`][funcnn.runtime.Plan] from [`plan`][funcnn.runtime.plan].
      argv: the command line to run again, without the interpreter (``sys.orig_argv[1:]``); when
        ``the_plan.reexec`` is set, the process is replaced by ``sys.executable`` with ``argv``
        (``os.execv``) and this call does not return. ``None`` skips the re-execution.
    """
    os.environ.update(the_plan.environ)
    if the_plan.cpu_devices is not None and "jax" in sys.modules:
        sys.modules["jax"].config.update("jax_num_cpu_devices", the_plan.cpu_devices)
    if the_plan.reexec and argv is not None:
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(sys.executable, [sys.executable, *argv])


def configure(**options: Any) -> Plan:
    """Give this process the set-up ``funcnn train`` runs under; call it before ``import jax``.

    Plans from this process's [`facts`][funcnn.runtime.facts] with ``options`` (the keyword arguments of
    [`plan`][funcnn.runtime.plan]: ``batch_size``, ``cpu_devices``, ``processes``, ``coordinator``,
    ``cpu_convolutions``, ``huge_pages``) and applies the plan. The re-execution for huge
    pages runs the same script with the same arguments (``sys.orig_argv``), so code above
    this call runs twice; it is skipped in an interactive session.

    Args:
      **options: keyword arguments of [`plan`][funcnn.runtime.plan]; with none, one CPU device per
        core, XLA:CPU's convolutions and huge pages, each where the user has not chosen already.

    Returns:
      The plan that was applied (when it re-executes the process, the call does not return).

    Raises:
      TypeError: when an option is not a keyword argument of [`plan`][funcnn.runtime.plan].
    """
    the_plan = plan(facts(), **options)
    interactive = sys.flags.interactive or not getattr(sys, "orig_argv", None) or hasattr(sys, "ps1")
    apply(the_plan, None if interactive else sys.orig_argv[1:])
    return the_plan


def jaxlib_version() -> tuple[int, ...]:
    """The installed jaxlib's ``(major, minor, patch)``, read without importing it; ``()`` if none.

    Returns:
      The leading digits of the version's first three parts, as ints (from ``importlib.metadata``);
      fewer where a part does not start with a digit (``"0.10.rc1"`` gives ``(0, 10)``), and ``()``
      when jaxlib is not installed.
    """
    try:
        release = importlib.metadata.version("jaxlib")
    except importlib.metadata.PackageNotFoundError:
        return ()
    numbers = []
    for part in release.split(".")[:3]:
        digits = "".join(itertools.takewhile(str.isdigit, part))
        if not digits:
            break
        numbers.append(int(digits))
    return tuple(numbers)
