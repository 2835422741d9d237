"""TensorFlow's benign C++ start-up lines are dropped; anything else it prints still reaches the user."""

from __future__ import annotations

import os
import subprocess
import sys

from cmal._tf import _filtered_startup_lines


def test_filter_drops_only_known_startup_notices():
    text = (
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
        "I0000 00:00:1.2 3 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.\n"
        "E0000 00:00:1.4 3 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: UNKNOWN ERROR (303)\n"
        "E0000 00:00:1.5 3 something.cc:1] a real failure\n"
    )
    assert _filtered_startup_lines(text) == "E0000 00:00:1.5 3 something.cc:1] a real failure\n"


def test_importing_through_cmal_prints_no_startup_noise():
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "CMAL_TF_LOGS")}
    code = "from cmal._tf import keras, tensorflow\nkeras(); tf = tensorflow(); print(float(tf.constant(1.0) + 1))\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "2.0"
    assert "cuInit" not in out.stderr and "absl::InitializeLog" not in out.stderr, out.stderr
