"""Where deltanas keeps its files: $DELTANAS_HOME (default ~/.cache/deltanas)."""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "DELTANAS_HOME"
DEFAULT_HOME = Path("~/.cache/deltanas")


def deltanas_home() -> Path:
    """Root of deltanas' caches and state: ``$DELTANAS_HOME`` or ``~/.cache/deltanas``."""
    return Path(os.environ.get(HOME_ENV) or DEFAULT_HOME).expanduser()
