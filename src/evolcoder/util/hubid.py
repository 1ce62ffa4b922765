"""Is a name a local path or a Hugging Face hub id? One answer for models and datasets.

Why one: a typo'd local path must fail as "not found", not be sent to the hub as an id (an
offline machine then reports a confusing network error, an online one may fetch something
else). Models and datasets had three checks with three rules.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")  # owner/name


def path_shaped(name: str) -> bool:
    """Starts like a path (`.`, `/`, `~`), has more than one `/`, or uses the OS separator:
    never a hub id, whether or not it exists."""
    return (name.startswith((".", "/", "~")) or name.count("/") > 1
            or (os.sep != "/" and os.sep in name))


def looks_local(name: str) -> bool:
    """An existing path, or anything path-shaped: a hub id is `name` or `owner/name`."""
    return Path(name).expanduser().exists() or path_shaped(name)


def looks_like_hub_dataset(name: str, local_suffixes: tuple[str, ...] = ()) -> bool:
    """`owner/name` with none of `local_suffixes`: what a hub dataset id looks like."""
    return bool(HUB_ID.match(name)) and not name.lower().endswith(local_suffixes)
