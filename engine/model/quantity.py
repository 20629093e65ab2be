"""Kubernetes resource quantities ("500m", "2Ti", "1.5G", "128") as exact integers.

CPU is kept in millicores and memory in bytes, both int64, so that the native kernels never
see floats and sums are exact.
"""
from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from .errors import InvalidRequest

_SUFFIX = {
    "": 1, "m": Decimal("0.001"),
    "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
}
_RE = re.compile(r"^\s*([+]?[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([a-zA-Z]{0,2})\s*$")
MAX_QUANTITY = 2**62  # also the "unlimited" sentinel: far beyond any real node
MAX_QUANTITY_CHARS = 64  # Kubernetes' own quantities are far shorter; bounds the parsing work
_MAX_DIGITS = len(str(MAX_QUANTITY))  # a value with more integer digits than this is too large
_PARSED: dict[tuple[str, int], int] = {}  # (string, scale) -> result: pods repeat a few quantities
_PARSED_MAX = 4096


def parse_quantity(value, *, field: str, scale: int = 1, error=InvalidRequest) -> int:
    """Parse a Kubernetes quantity into an integer number of ``1/scale`` units.

    ``scale=1000`` turns cores into millicores ("500m" -> 500, 2 -> 2000); ``scale=1`` keeps bytes.
    Fractions of the target unit round up (Kubernetes rounds requests up too).
    """
    if type(value) is str:  # every pod the extender sees is parsed (twice per scheduling cycle)
        hit = _PARSED.get((value, scale))
        if hit is not None:
            return hit
        result = _parse(value, field=field, scale=scale, error=error)
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.clear()
        _PARSED[(value, scale)] = result
        return result
    return _parse(value, field=field, scale=scale, error=error)


def _parse(value, *, field: str, scale: int, error) -> int:
    if isinstance(value, bool) or value is None:
        raise error(f"expected a number or quantity string, got {value!r}", field=field)
    if isinstance(value, (int, float)):
        if value != value or value in (float("inf"), float("-inf")):
            raise error(f"expected a finite number, got {value!r}", field=field)
        number = Decimal(str(value))
    elif isinstance(value, str):
        if len(value) > MAX_QUANTITY_CHARS:
            raise error(f"not a Kubernetes quantity: longer than {MAX_QUANTITY_CHARS} characters "
                        f"({value[:24]!r}...)", field=field)
        m = _RE.match(value)
        if not m or m.group(2) not in _SUFFIX:
            raise error(f"not a Kubernetes quantity: {value!r}", field=field)
        try:
            number = Decimal(m.group(1)) * Decimal(_SUFFIX[m.group(2)])
        except InvalidOperation:
            raise error(f"not a Kubernetes quantity: {value!r}", field=field) from None
        except ArithmeticError:  # decimal.Overflow: an exponent beyond the decimal context ("1e1000000")
            raise error(f"too large: {value!r}", field=field) from None
    else:
        raise error(f"expected a number or quantity string, got {type(value).__name__}", field=field)
    if number < 0:
        raise error(f"must be >= 0, got {value!r}", field=field)
    # The magnitude is checked on the exponent before any integer is made: int(Decimal("1e999999"))
    # would build a million-digit integer (tens of seconds on the event loop).
    if number and number.adjusted() + len(str(scale)) > _MAX_DIGITS:
        raise error(f"too large: {value!r}", field=field)
    scaled = number * scale
    result = int(scaled) + (1 if scaled != int(scaled) else 0)
    if result > MAX_QUANTITY:
        raise error(f"too large: {value!r}", field=field)
    return result


def format_cpu(millicores: int) -> int | str:
    """Millicores back to the shortest quantity: whole cores as an int, else "NNNm"."""
    return millicores // 1000 if millicores % 1000 == 0 else f"{millicores}m"


def format_memory(num_bytes: int) -> int | str:
    """Bytes back to the largest exact binary suffix ("2Ti", "256Gi"), else an int."""
    for suffix in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
        unit = _SUFFIX[suffix]
        if num_bytes and num_bytes % unit == 0:
            return f"{num_bytes // unit}{suffix}"
    return num_bytes
