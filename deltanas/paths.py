"""Where deltanas keeps its files: $DELTANAS_HOME (default ~/.cache/deltanas)."""

from __future__ import annotations

import os
from pathlib import Path


def deltanas_home() -> Path:
    return Path(os.environ.get("DELTANAS_HOME", Path.home() / ".cache" / "deltanas")).expanduser()
