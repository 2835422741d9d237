"""One place that imports Keras for cmal, with cmal's logging settings applied once."""

from __future__ import annotations

import logging
from typing import Any

_configured = False


class _DropRetracingNotice(logging.Filter):
    # Each round builds a fresh model (the paper's protocol), so Keras traces new predict functions by
    # design; TensorFlow's "triggered tf.function retracing" advice does not apply and only buries progress bars.
    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


def keras() -> Any:
    """Import and return ``keras`` (TensorFlow backend), configuring TensorFlow's Python logger once."""
    global _configured
    import keras as _keras

    if not _configured:
        logging.getLogger("tensorflow").addFilter(_DropRetracingNotice())
        _configured = True
    return _keras
