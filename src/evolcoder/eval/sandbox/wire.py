"""What crosses the sandbox boundary: tagged JSON values and length-prefixed frames.

Plain data in and out of the sandbox, never pickle (unpickling runs code). Only exact
builtin types are accepted, so a returned object cannot lie about equality.
"""

from __future__ import annotations

import json
import math
import os
import struct
from hashlib import sha256 as _sha256
from typing import Any

BIG_OUTPUT = 1 << 20  # outputs larger than this (as JSON) travel as a digest


def encode(value: Any, _depth: int = 0) -> Any:
    """Turn builtin data (incl. tuple/set/dict/complex/nan) into JSON-safe tagged form.

    Subclasses of builtins (Counter, OrderedDict, namedtuple, ...) are reduced to their
    base type through the base type's own methods, so an overridden `__eq__`, `__iter__`
    or `__repr__` cannot change what is reported; any other type is refused.
    """
    if _depth > 200:
        raise TypeError("value nested too deeply")
    d = _depth + 1
    if value is None or value is True or value is False:
        return value
    if isinstance(value, int):
        value = int.__int__(value)
        return value if value.bit_length() < 12000 else {"$i": format(value, "x")}
    if isinstance(value, float):
        value = float.__float__(value)
        return value if math.isfinite(value) else {"$f": repr(value)}
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, list):
        return [encode(v, d) for v in list.__iter__(value)]
    if isinstance(value, tuple):
        return {"$t": [encode(v, d) for v in tuple.__iter__(value)]}
    if isinstance(value, (set, frozenset)):
        items = set.__iter__(value) if isinstance(value, set) else frozenset.__iter__(value)
        return {"$s" if isinstance(value, set) else "$fs": [encode(v, d) for v in items]}
    if isinstance(value, dict):
        return {"$d": [[encode(k, d), encode(v, d)] for k, v in dict.items(value)]}
    if isinstance(value, complex):
        return {"$c": [encode(complex.real.__get__(value), d), encode(complex.imag.__get__(value), d)]}
    if isinstance(value, bytes):
        return {"$b": bytes.hex(value)}
    raise TypeError(f"unsupported result type {type(value).__name__}")


def decode(value: Any) -> Any:
    """Inverse of `encode`; builds only builtin objects."""
    if isinstance(value, list):
        return [decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    (tag, inner), = value.items()
    if tag == "$f":
        return float(inner)
    if tag == "$i":
        return int(inner, 16)
    if tag == "$t":
        return tuple(decode(v) for v in inner)
    if tag == "$s":
        return {decode(v) for v in inner}
    if tag == "$fs":
        return frozenset(decode(v) for v in inner)
    if tag == "$d":
        return {decode(k): decode(v) for k, v in inner}
    if tag == "$c":
        return complex(decode(inner[0]), decode(inner[1]))
    if tag == "$b":
        return bytes.fromhex(inner)
    raise ValueError(f"unknown tag {tag!r}")


def _canonical(value: Any) -> Any:
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    if not isinstance(value, dict):
        return value
    (tag, inner), = value.items()
    if tag in ("$s", "$fs", "$d"):
        items = [_canonical(v) for v in inner]
        return {tag: sorted(items, key=lambda v: json.dumps(v, sort_keys=True))}
    return {tag: _canonical(inner)}


def digest(encoded: Any) -> str:
    """Order-independent hash of an encoded value (sets and dicts sorted), for big outputs."""
    return _sha256(json.dumps(_canonical(encoded), sort_keys=True).encode()).hexdigest()


# Framing between the pool and its workers: 4-byte length + JSON.

def send(fd: int, obj: Any) -> None:
    """Write one frame; loops because a pipe may take a large frame in pieces."""
    data = json.dumps(obj).encode()
    buf = struct.pack(">I", len(data)) + data
    while buf:
        buf = buf[os.write(fd, buf):]


def _recv_exact(fd: int, n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            raise EOFError("sandbox worker closed its pipe")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def recv(fd: int) -> Any:
    """Read one frame; EOFError when the other side has gone."""
    (n,) = struct.unpack(">I", _recv_exact(fd, 4))
    return json.loads(_recv_exact(fd, n))
