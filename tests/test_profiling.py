"""Kernel totals from a Perfetto trace: device streams, the CPU fallback, categories."""

import gzip
import json

import numpy as np
import pytest

from seqmia_jax.perf import profiling


def _write_trace(path, events):
    path.mkdir(parents=True)
    with gzip.open(path / "perfetto_trace.json.gz", "wt") as f:
        json.dump({"traceEvents": events}, f)


def _meta(pid, name, tid=None):
    if tid is None:
        return {"ph": "M", "pid": pid, "name": "process_name", "args": {"name": name}}
    return {"ph": "M", "pid": pid, "tid": tid, "name": "thread_name", "args": {"name": name}}


def _kernel(pid, name, dur_us, tid=1):
    return {"ph": "X", "pid": pid, "tid": tid, "name": name, "dur": dur_us, "args": {"op": name}}


def test_device_streams_are_summed_and_the_host_is_ignored(tmp_path):
    events = [
        _meta(1, "/host:CPU"),
        _meta(2, "/device:GPU:0"),
        _kernel(1, "PjitFunction(step)", 9000),
        _kernel(2, "nvjet_sm90_tst_128x128", 300),
        _kernel(2, "nvjet_sm90_tst_128x128", 200),
        _kernel(2, "input_reduce_fusion_3", 250),
        _kernel(2, "cudnn_generated_sdpa_flash_bprop", 150),
        _kernel(2, "loop_add_fusion", 100),
    ]
    _write_trace(tmp_path / "run", events)
    summary = profiling.summarize_trace(tmp_path, top=2)
    assert np.isclose(summary["kernel_seconds"], 1000e-6)
    assert summary["categories"] == pytest.approx(
        {
            "matmul": 500e-6,
            "reduction fusion": 250e-6,
            "attention (cuDNN)": 150e-6,
            "other fusion": 100e-6,
        }
    )
    assert next(iter(summary["categories"])) == "matmul"  # largest first
    top = summary["top_kernels"]
    assert [k["name"] for k in top] == ["nvjet_sm90_tst_128x128", "input_reduce_fusion_3"]
    assert top[0]["count"] == 2 and np.isclose(top[0]["seconds"], 500e-6)
    assert top[0]["args"] == {"op": "nvjet_sm90_tst_128x128"}
    text = profiling.format_profile(summary, wall_seconds=2e-3)
    assert "50% busy" in text and "| matmul | 0.0005 | 50.0% |" in text


def test_cpu_traces_use_the_xla_threads_without_executor_spans(tmp_path):
    events = [
        _meta(1, "/host:CPU"),
        _meta(1, "tf_XLAEigen/1", tid=7),
        _meta(1, "python", tid=8),
        _kernel(1, "dot.3", 40, tid=7),
        _kernel(1, "ThunkExecutor::Execute", 100, tid=7),
        _kernel(1, "while.72", 60, tid=7),
        _kernel(1, "copy_bitcast_fusion", 10, tid=7),
        _kernel(1, "dot.9", 500, tid=8),  # a Python thread, not a kernel
    ]
    _write_trace(tmp_path / "run", events)
    summary = profiling.summarize_trace(tmp_path)
    assert np.isclose(summary["kernel_seconds"], 50e-6)
    assert summary["categories"] == pytest.approx({"matmul": 40e-6, "copy / transpose": 10e-6})
