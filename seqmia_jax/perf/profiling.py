"""Device profiles in a few lines: trace a function with jax.profiler, total its kernels.

``profile(fn, trace_dir)`` runs ``fn`` under ``jax.profiler.trace`` with a
Perfetto trace and returns ``summarize_trace`` of it: the device time of every
kernel, grouped into categories (matmul, attention, sort, scatter, copy, ...)
and as the top kernels by total time. It needs no TensorBoard: the Perfetto
JSON is read directly. On a GPU or TPU the device's own streams are summed; on
CPU, which has no device streams, the XLA worker threads' events are.
"""

import collections
import gzip
import json
from collections.abc import Callable
from pathlib import Path

import jax

# Category of a kernel, from substrings of its lower-cased name; the first match wins.
CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("attention (cuDNN)", ("fmha", "flash", "cudnn")),
    # ynn_fusion: XLA:CPU's YNNPACK fusions, built around dots.
    ("matmul", ("gemm", "cutlass", "nvjet", "xmma", "cublas", "dot", "conv", "matmul", "ynn")),
    ("sort", ("sort",)),
    ("scatter", ("scatter",)),
    ("gather", ("gather",)),
    ("copy / transpose", ("memcpy", "memset", "copy", "transpose")),
    ("reduction fusion", ("reduce", "reduction")),
    ("other fusion", ("fusion",)),
)


def kernel_category(name: str) -> str:
    lower = name.lower()
    for category, needles in CATEGORIES:
        if any(needle in lower for needle in needles):
            return category
    return "other"


def _device_events(events: list[dict]) -> list[dict]:
    """Complete ('X') events on device streams, else on the host's XLA threads."""
    process_names = {
        e["pid"]: e["args"]["name"]
        for e in events
        if e.get("ph") == "M" and e.get("name") == "process_name"
    }
    thread_names = {
        (e["pid"], e["tid"]): e["args"]["name"]
        for e in events
        if e.get("ph") == "M" and e.get("name") == "thread_name"
    }
    complete = [e for e in events if e.get("ph") == "X" and "dur" in e]
    device_pids = {
        pid for pid, name in process_names.items() if "/device:" in name and "host" not in name
    }
    on_device = [e for e in complete if e["pid"] in device_pids]
    if on_device:
        return on_device
    # On CPU, "A::B" events are the executor's spans around the ops, and control
    # flow ops (while, call, conditional) span the kernels they run: not kernels.
    return [
        e
        for e in complete
        if thread_names.get((e["pid"], e.get("tid")), "").startswith("tf_XLA")
        and "::" not in e["name"]
        and not e["name"].startswith(("while", "call", "conditional"))
    ]


def summarize_trace(trace_dir: str | Path, top: int = 15) -> dict:
    """Totals of the newest Perfetto trace under ``trace_dir`` (microseconds in, seconds out)."""
    paths = sorted(Path(trace_dir).rglob("perfetto_trace.json.gz"), key=lambda p: p.stat().st_mtime)
    if not paths:
        raise FileNotFoundError(f"no perfetto_trace.json.gz under {trace_dir}")
    with gzip.open(paths[-1], "rt") as f:
        trace = json.load(f)
    events = _device_events(trace["traceEvents"] if isinstance(trace, dict) else trace)
    by_name: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0])
    args_of: dict[str, dict] = {}  # one event's annotations per kernel (HLO op names and such)
    for e in events:
        entry = by_name[e["name"]]
        entry[0] += e["dur"] * 1e-6
        entry[1] += 1
        args_of.setdefault(e["name"], e.get("args", {}))
    total = sum(seconds for seconds, _ in by_name.values())
    by_category: dict[str, float] = collections.defaultdict(float)
    for name, (seconds, _) in by_name.items():
        by_category[kernel_category(name)] += seconds
    ranked = sorted(by_name.items(), key=lambda item: -item[1][0])
    return {
        "trace": str(paths[-1]),
        "kernel_seconds": total,
        "categories": dict(sorted(by_category.items(), key=lambda item: -item[1])),
        "top_kernels": [
            {
                "name": name,
                "seconds": seconds,
                "count": count,
                "category": kernel_category(name),
                "args": {k: str(v)[:300] for k, v in args_of[name].items()},
            }
            for name, (seconds, count) in ranked[:top]
        ],
    }


def profile(fn: Callable[[], object], trace_dir: str | Path, top: int = 15) -> dict:
    """Runs ``fn()`` (which must block until its results are ready) under the profiler."""
    with jax.profiler.trace(str(trace_dir), create_perfetto_trace=True):
        fn()
    return summarize_trace(trace_dir, top)


def format_profile(summary: dict, wall_seconds: float | None = None) -> str:
    """Two markdown tables: device time per category, then the top kernels."""
    total = summary["kernel_seconds"] or float("nan")
    head = f"device kernel time {total:.3f} s"
    if wall_seconds:
        head += f" of {wall_seconds:.3f} s wall ({100 * total / wall_seconds:.0f}% busy)"
    lines = [head, "", "| category | seconds | share |", "|---|---|---|"]
    for category, seconds in summary["categories"].items():
        lines.append(f"| {category} | {seconds:.4f} | {100 * seconds / total:.1f}% |")
    lines += ["", "| kernel | category | calls | seconds | share |", "|---|---|---|---|---|"]
    for k in summary["top_kernels"]:
        name = k["name"] if len(k["name"]) <= 70 else k["name"][:67] + "..."
        lines.append(
            f"| `{name}` | {k['category']} | {k['count']} | {k['seconds']:.4f} | "
            f"{100 * k['seconds'] / total:.1f}% |"
        )
    return "\n".join(lines) + "\n"
