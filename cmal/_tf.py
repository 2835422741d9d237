"""One place that imports TensorFlow and Keras for cmal, with cmal's logging settings applied once."""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
from typing import Any

_configured = False
_tf: Any = None

# TensorFlow's C++ start-up lines that say nothing is wrong: on every CPU-only machine it reports that CUDA is
# absent (``E0000 ... failed call to cuInit``, printed as an *error*), that oneDNN is on, which CPU instructions it
# was built for. They are written to file descriptor 2 before TensorFlow's own log level applies, so in Jupyter
# they arrive as a red block that looks like a failure. Only these patterns are dropped; any other line is passed
# on. ``CMAL_TF_LOGS=1`` shows everything.
_BENIGN = re.compile(
    r"All log messages before absl::InitializeLog|oneDNN custom operations are on|Could not find cuda drivers|"
    r"cpu_feature_guard|To enable the following instructions|rebuild TensorFlow with the appropriate compiler|"
    r"failed call to cuInit|Unable to register cu(DNN|FFT|BLAS) factory|computation placer already registered|"
    r"TF-TRT Warning|This TensorFlow binary is optimized"
)


class _DropRetracingNotice(logging.Filter):
    # Each round builds a fresh model (the paper's protocol), so Keras traces new predict functions by
    # design; TensorFlow's "triggered tf.function retracing" advice does not apply and only buries progress bars.
    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


def _filtered_startup_lines(text: str) -> str:
    return "".join(line for line in text.splitlines(keepends=True) if line.strip() and not _BENIGN.search(line))


def tensorflow() -> Any:
    """Import and return ``tensorflow``, dropping its benign C++ start-up lines (see ``_BENIGN``).

    The import and the first device discovery (where CUDA is probed) run with file descriptor 2 redirected to a
    temporary file; afterwards every line that is not a known start-up notice is written to ``sys.stderr``.
    """
    global _tf
    if _tf is not None:
        return _tf
    if os.environ.get("CMAL_TF_LOGS") == "1" or "tensorflow" in sys.modules:
        import tensorflow as tf

        _tf = tf
        return tf
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        sys.stderr.flush()
    except (AttributeError, ValueError):  # pragma: no cover - a closed or replaced stderr
        pass
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()  # probes CUDA now, inside the redirect
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            rest = _filtered_startup_lines(capture.read().decode("utf-8", "replace"))
    if rest:
        sys.stderr.write(rest)
    _tf = tf
    return tf


def keras() -> Any:
    """Import and return ``keras`` (TensorFlow backend), configuring TensorFlow's Python logger once."""
    global _configured
    tensorflow()
    import keras as _keras

    if not _configured:
        logging.getLogger("tensorflow").addFilter(_DropRetracingNotice())
        _configured = True
    return _keras
