"""The one rule for a number written in a config value, an option or a
signal name: ASCII digits only. Pure; light enough for single-command mode."""

from __future__ import annotations


def ascii_int(text: str, *, most: int = 20) -> int | None:
    """The number that text is (blanks around it ignored), in ASCII digits
    only, else None: str.isdigit also takes superscripts and other scripts'
    digits, which int() then refuses or reads. At most `most` digits, so no
    huge int parse."""
    text = text.strip()
    if not text.isascii() or not text.isdigit() or len(text) > most:
        return None
    return int(text)
