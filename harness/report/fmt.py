"""Numbers as text, always with their unit; a missing number is an em dash."""

from __future__ import annotations

import math
from typing import Any

from harness.record import finite

MISSING = "—"


def is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return False
    try:
        return math.isnan(float(value))
    except (TypeError, ValueError):
        return value.__class__.__name__ == "NAType"


num = finite  # a finite float, or None


def value(v: Any) -> str:
    """A setting's value as text: 8 rather than 8.0, 0.005 rather than 0.0050000001."""
    if v is None:
        return MISSING
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        if math.isnan(v):
            return MISSING
        if v.is_integer() and abs(v) < 1e15:
            return str(int(v))
        return f"{v:g}"
    if hasattr(v, "item") and not isinstance(v, str):  # numpy scalars
        try:
            return value(v.item())
        except (TypeError, ValueError):
            pass
    return str(v)


def seconds(v: Any) -> str:
    f = num(v)
    if f is None:
        return MISSING
    a = abs(f)
    if a < 0.001:
        return f"{f:.2g} s"
    if a < 1:
        return f"{f * 1000:.0f} ms"
    if a < 10:
        return f"{f:.2f} s"
    if a < 100:
        return f"{f:.1f} s"
    if a < 3600 * 1.5:
        return f"{f / 60:.1f} min"
    return f"{f / 3600:.1f} h"


def hours(v: Any) -> str:
    """A long duration in hours, with minutes alongside where it is under two hours."""
    f = num(v)
    if f is None:
        return MISSING
    h = f / 3600
    if h < 2:
        return f"{h:.2f} h ({f / 60:.0f} min)" if f >= 60 else seconds(f)
    return f"{h:.1f} h" if h < 1000 else f"{h:,.0f} h"


def mib(v: Any) -> str:
    f = num(v)
    if f is None:
        return MISSING
    if abs(f) >= 10240:
        return f"{f / 1024:.1f} GiB"
    return f"{f:,.0f} MiB"


def usd(v: Any) -> str:
    f = num(v)
    if f is None:
        return MISSING
    if f == 0:
        return "$0"
    if abs(f) < 0.1:
        digits = min(12, 1 - math.floor(math.log10(abs(f))))  # two significant digits, never 1e-05
        return f"{'-' if f < 0 else ''}${abs(f):.{digits}f}"
    if abs(f) < 100:
        return f"${f:.2f}"
    return f"${f:,.0f}"


def joules(v: Any) -> str:
    f = num(v)
    if f is None:
        return MISSING
    if abs(f) >= 1e6:
        return f"{f / 1e6:.3g} MJ"
    if abs(f) >= 1e4:
        return f"{f / 1e3:.3g} kJ"
    return f"{f:,.0f} J" if abs(f) >= 10 else f"{f:.2g} J"


def pct(v: Any, digits: int = 1) -> str:
    """A fraction in [0, 1] as a percentage."""
    f = num(v)
    if f is None:
        return MISSING
    return f"{f * 100:.{digits}f} %"


def pp(v: Any) -> str:
    """A difference of two fractions, in percentage points, signed."""
    f = num(v)
    if f is None:
        return MISSING
    return f"{f * 100:+.1f} pp".replace("-0.0 pp", "+0.0 pp")


def ratio(v: Any) -> str:
    f = num(v)
    if f is None:
        return MISSING
    return f"{f:.2f}×"


def rel(v: Any) -> str:
    """A relative saving (0.25 -> '25 % less'); negative means more."""
    f = num(v)
    if f is None:
        return MISSING
    return f"{abs(f) * 100:.0f} % {'less' if f >= 0 else 'more'}"


def count(v: Any) -> str:
    f = num(v)
    if f is None:
        return MISSING
    return f"{f:,.0f}"


def rate(v: Any, unit: str) -> str:
    f = num(v)
    if f is None:
        return MISSING
    return f"{f:,.0f} {unit}" if abs(f) >= 100 else f"{f:.3g} {unit}"


def per_row(v: Any) -> str:
    f = num(v)
    if f is None:
        return MISSING
    return f"{f * 1000:.3g} ms/row"
