"""Record text as it may be shown: the invisible controls that reorder or hide text made visible.

A name from CloudTrail holding RIGHT-TO-LEFT OVERRIDE (U+202E) displays reversed: ``admin``
can read as ``nimda`` and the reverse. Every place that shows record text (tables, charts,
detections, alert text) shows these controls as their escape instead, ``\\u202e``, through
``visible`` (Python) or ``vega_visible`` (the same table, as a Vega expression for a chart's
labels). Values themselves are never changed: filters, downloads and JSON keep them exact.

>>> visible("evil\\u202eexe.pdf")
'evil\\\\u202eexe.pdf'
>>> visible("plain"), visible(None)
('plain', None)
"""

from __future__ import annotations

import re

import pandas as pd

# Bidirectional embeddings, overrides, isolates and marks, and the zero-width characters that
# hide text: none belongs in an AWS name, address or user agent.
CONTROLS = (
    *range(0x202A, 0x202F),  # LRE, RLE, PDF, LRO, RLO
    *range(0x2066, 0x206A),  # LRI, RLI, FSI, PDI
    0x200E,  # LRM
    0x200F,  # RLM
    0x061C,  # ALM
    0x200B,  # zero-width space
    0x200C,  # zero-width non-joiner
    0x200D,  # zero-width joiner
    0x2060,  # word joiner
    0xFEFF,  # zero-width no-break space
)
_PATTERN = re.compile("[" + "".join(chr(code) for code in CONTROLS) + "]")


def _escape(match: re.Match) -> str:
    return f"\\u{ord(match.group()):04x}"


def visible(text):
    """``text`` with every control of ``CONTROLS`` shown as its ``\\uXXXX`` escape; anything
    that is not a string is returned as it is."""
    return _PATTERN.sub(_escape, text) if isinstance(text, str) else text


def visible_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` for display: every text cell through ``visible``."""
    out = frame.copy()
    for column in out.columns:
        if not pd.api.types.is_numeric_dtype(out[column]) and not pd.api.types.is_bool_dtype(out[column]):
            out[column] = out[column].astype(object).map(visible)
    return out


def vega_visible(field: str) -> str:
    """A Vega expression giving ``datum[field]`` as ``visible`` gives it, for a calculated field."""
    expression = f"''+datum[{field!r}]"
    for code in CONTROLS:
        expression = f"replace({expression}, regexp('\\\\u{code:04x}', 'g'), '\\\\u{code:04x}')"
    return expression
