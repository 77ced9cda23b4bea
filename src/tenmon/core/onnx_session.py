"""Loading a packaged ONNX model for onnxruntime: telemetry off, a fixed, small thread count."""

from __future__ import annotations

from pathlib import Path

from tenmon.core.errors import VisionError


def load_session(path: Path, threads: int):
    """An onnxruntime ``InferenceSession`` of ``path`` on the CPU, ``threads`` intra-op threads,
    sequential execution, telemetry off (the slit encoder's networks; blocking, ~0.1 s).

    Raises:
        VisionError: the model cannot be loaded (names the file).
    """
    import onnxruntime as ort

    try:
        ort.disable_telemetry_events()
    except AttributeError:  # very old onnxruntime
        pass
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise VisionError(f"cannot load slit model {path}: {exc}") from exc
