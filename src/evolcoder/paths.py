"""The per-user cache directory shared by every stage and project on a machine.

It holds things that are expensive to make and identical wherever they are made:
downloaded benchmark files, expected outputs computed from canonical solutions, and
the converted embedded model. Never a DVC output, so DVC never tracks or deletes it.
"""

from __future__ import annotations

import os
from pathlib import Path


def user_cache_dir() -> Path:
    """`$EVOLCODER_CACHE_DIR`, else `~/.cache/evolcoder`."""
    return Path(os.environ.get("EVOLCODER_CACHE_DIR") or Path.home() / ".cache" / "evolcoder")
