"""Run inside a frame-pool worker by test_frame_pool.py: what the worker's libraries may use."""

from __future__ import annotations

import os


def library_threads() -> dict:
    """Thread limits seen in this process after numpy and OpenCV are imported."""
    import cv2
    import numpy  # noqa: F401 - loads its BLAS, which threadpoolctl then reports
    from threadpoolctl import threadpool_info

    return {"env": {v: os.environ.get(v) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                    "MKL_NUM_THREADS")},
            "pools": {f"{i['internal_api']}:{i['filepath']}": i["num_threads"]
                      for i in threadpool_info()},
            "cv2": cv2.getNumThreads(), "nice": os.nice(0)}
