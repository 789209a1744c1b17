"""Shared start-up of the absl entry points: distributed init, device log, clean errors.

Multi-host runs use JAX's own multi-controller runtime. ``--distributed=auto``
calls ``jax.distributed.initialize()`` with no arguments, which reads SLURM,
TPU-pod or Kubernetes environments; ``--coordinator_address`` with
``--num_processes`` and ``--process_id`` configures it explicitly (also for
several CPU processes on localhost).
"""

import errno
import os
import sys
from collections.abc import Callable

import jax
from absl import app, flags, logging

from seqmia_jax.config import ConfigError

_DISTRIBUTED = flags.DEFINE_enum(
    "distributed", "off", ["off", "auto"], "Initialize jax.distributed from the environment."
)
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "host:port of process 0 for an explicit multi-process run."
)
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in a multi-process run.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index.")
_COMPILATION_CACHE = flags.DEFINE_string(
    "compilation_cache",
    os.path.join(os.path.expanduser("~"), ".cache", "seqmia_jax", "xla"),
    "Persistent XLA compilation cache ('' to disable; JAX_COMPILATION_CACHE_DIR wins).",
)

# How long a finished process waits at exit for the others (jax's default is
# 300 s, after which every process aborts). Host-only stages (attacks, report)
# run on process 0 alone while the others wait here; a process that dies is
# still detected at once by the coordination service's heartbeat.
_SHUTDOWN_TIMEOUT_S = 24 * 3600


class _QuietLibraries:
    """Drops INFO records of orbax and tfds, which log every checkpoint step."""

    def filter(self, record) -> bool:
        noisy = ("orbax", "tensorflow_datasets", "xla_bridge")
        return record.levelno > 20 or not any(n in record.pathname for n in noisy)


def init_runtime() -> None:
    """Turns on the compilation cache, starts jax.distributed when asked to, logs the devices.

    The persistent cache lets a second run of the same shapes skip XLA
    compilation (about 35 s of a cold GPU attack stage, docs/performance.md).
    """
    import logging as std_logging

    std_logging.getLogger("absl").addFilter(_QuietLibraries())
    if _COMPILATION_CACHE.value and not jax.config.values.get("jax_compilation_cache_dir"):
        jax.config.update("jax_compilation_cache_dir", _COMPILATION_CACHE.value)
    if _COORDINATOR.value:
        if _NUM_PROCESSES.value is None or _PROCESS_ID.value is None:
            raise app.UsageError("--coordinator_address needs --num_processes and --process_id")
        _use_cpu_collectives()
        jax.distributed.initialize(
            coordinator_address=_COORDINATOR.value,
            num_processes=_NUM_PROCESSES.value,
            process_id=_PROCESS_ID.value,
            shutdown_timeout_seconds=_SHUTDOWN_TIMEOUT_S,
        )
    elif _DISTRIBUTED.value == "auto":
        _use_cpu_collectives()
        jax.distributed.initialize(shutdown_timeout_seconds=_SHUTDOWN_TIMEOUT_S)
    logging.info(
        "process %d/%d, %d local / %d global devices: %s",
        jax.process_index(),
        jax.process_count(),
        jax.local_device_count(),
        jax.device_count(),
        jax.devices()[0].device_kind,
    )


def _use_cpu_collectives() -> None:
    """Cross-process collectives for CPU devices (gloo), unless chosen already.

    Without them, a computation over the devices of several CPU processes fails.
    jax 0.10 already defaults to gloo; older versions defaulted to none. The
    setting only affects the CPU backend, so it is harmless on GPU and TPU.
    """
    if jax.config.values.get("jax_cpu_collectives_implementation") in (None, "", "none"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")


def user_errors() -> tuple[type[Exception], ...]:
    """Errors whose message is the whole story: printed without a traceback."""
    from seqmia_jax.attacks.base import AttackInputError
    from seqmia_jax.ensemble.train import TrainingError
    from seqmia_jax.workdir import WorkdirError

    return (ConfigError, WorkdirError, TrainingError, AttackInputError, FileExistsError)


# Faults of the disk or the file system that a message can explain in one line.
_DISK_ERRORS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}


def disk_fault(error: BaseException) -> str | None:
    """A one-line cause if ``error`` (or one it was raised from) is a disk or permission fault.

    Libraries (orbax, tensorstore, numpy) wrap the OSError, so the chain of causes
    is searched, and a wrapped message that only names the errno is recognized too.
    """
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in _DISK_ERRORS:
            where = f": {error.filename}" if error.filename else ""
            return f"{_DISK_ERRORS[error.errno]}{where}"
        text = str(error)
        for code, cause in _DISK_ERRORS.items():
            if code in (errno.ENOSPC, errno.EROFS, errno.EDQUOT) and (os.strerror(code) in text):
                return f"{cause} ({text.splitlines()[0][:200]})"
        error = error.__cause__ or error.__context__
    return None


def run_cleanly(fn: Callable[[], object]) -> None:
    """Runs ``fn``; a user error or a disk fault prints one clear message and exits with 2."""
    try:
        fn()
    except user_errors() as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except Exception as e:
        cause = disk_fault(e)
        if cause is None:
            raise
        print(
            f"error: {cause}; nothing complete was lost, re-run once it is fixed", file=sys.stderr
        )
        sys.exit(2)


def define_config(default: str = "configs/kjv_gpt.py"):
    """``--config=configs/<name>.py[:arg]`` with ``--config.<field>=`` overrides.

    ml_collections loads the default and applies command-line overrides while
    the flag is defined, so a typo there would be a chain of three tracebacks;
    here it is one line.
    """
    from ml_collections import config_flags

    try:
        return config_flags.DEFINE_config_file("config", default, "Config file[:arg].")
    except Exception as e:  # noqa: BLE001  (whatever the config file or override raised)
        _exit_with(e)


def run_main(main: Callable) -> None:
    """``app.run(main)`` with flag and config-file errors reported in one line."""
    app.run(main, flags_parser=_parse_flags)


def _parse_flags(argv: list[str]) -> list[str]:
    try:
        rest = flags.FLAGS(argv)
        if "config" in flags.FLAGS:
            # A config file that failed to load raises on first use: make that here.
            hasattr(flags.FLAGS["config"].value, "to_dict")
        return rest
    except Exception as e:  # noqa: BLE001
        _exit_with(e)


def _one_line(error: BaseException) -> str:
    """The message that explains a chain of exceptions, on one line."""
    chain = []
    while error is not None and error not in chain:
        chain.append(error)
        error = error.__cause__ or error.__context__
    texts = [str(e).replace("\\n", " ").replace("\\'", "'") for e in chain]
    for text in texts:
        if "Did you mean" in text:  # ml_collections' suggestion for an unknown field
            field = text.split("Did you mean")[0].strip(" '\"\n")
            hint = "Did you mean" + text.split("Did you mean")[1].rstrip("'\"")
            return f"unknown config field '{field.strip(chr(39))}'. {hint}"
    for line in (line.strip() for text in texts for line in text.splitlines()):
        if line.startswith("[Errno"):  # e.g. the config file that does not exist
            return line
    plain = [t for t in texts if t.strip() and "Traceback" not in t]
    return (plain[-1] if plain else texts[0]).strip().splitlines()[0]


def _exit_with(error: BaseException):
    print(f"error: {_one_line(error)}", file=sys.stderr)
    sys.exit(2)


def config_path_and_arg(flag_name: str = "config") -> tuple[str, str]:
    """The config file path and its ``:arg`` from a DEFINE_config_file flag."""
    from ml_collections import config_flags

    path, _, arg = config_flags.get_config_filename(flags.FLAGS[flag_name]).partition(":")
    return path, arg


def workdir_for(config_filename: str) -> str:
    """``runs/<config name>[_<arg>]``: configs/kjv_gpt.py:gpu -> runs/kjv_gpt_gpu.

    The ``:arg`` is part of the name, so the sizes of one config file never
    share (and are never refused by) one work directory.
    """
    from pathlib import Path

    path, _, arg = config_filename.partition(":")
    return str(Path("runs") / (Path(path).stem + (f"_{arg}" if arg else "")))


def default_workdir(flag_name: str = "config") -> str:
    """``workdir_for`` the config file given to a DEFINE_config_file flag."""
    from ml_collections import config_flags

    return workdir_for(config_flags.get_config_filename(flags.FLAGS[flag_name]))
