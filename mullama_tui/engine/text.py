"""Turns a stream of token byte pieces into safe text pieces.

Two jobs, both incremental and pure Python (unit-testable without a model):
- UTF-8: a character split across tokens is held until its last byte arrives, so a
  piece never contains U+FFFD or half a character;
- stop strings: text that could still become a stop string is held back; once a stop
  string completes, the text before it is released and the rest is never emitted.
"""

from __future__ import annotations

import codecs


class TextAssembler:
    """Feed token bytes with `push`; get back text that is safe to show now."""

    __slots__ = ("_decoder", "_stops", "_max_stop", "_held", "stopped")

    def __init__(self, stop: list[str] | tuple[str, ...] = ()) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._stops = tuple(s for s in stop if s)
        self._max_stop = max((len(s) for s in self._stops), default=0)
        self._held = ""  # decoded text not yet released because it may start a stop string
        self.stopped = False

    def push(self, piece: bytes) -> str:
        """Add one token's bytes; return the text that can be emitted now ('' if none)."""
        text = self._decoder.decode(piece)
        if not self._stops:
            return text
        if self.stopped or not text:
            return ""
        buf = self._held + text
        # A complete stop string: release what precedes the earliest one, drop the rest.
        cut = -1
        for s in self._stops:
            i = buf.find(s)
            if i != -1 and (cut == -1 or i < cut):
                cut = i
        if cut != -1:
            self.stopped = True
            self._held = ""
            return buf[:cut]
        # Hold back the longest tail that is a prefix of some stop string.
        keep = 0
        for n in range(min(len(buf), self._max_stop - 1), 0, -1):
            tail = buf[-n:]
            if any(s.startswith(tail) for s in self._stops):
                keep = n
                break
        if keep:
            self._held = buf[-keep:]
            return buf[:-keep]
        self._held = ""
        return buf

    def flush(self) -> str:
        """At the end of a generation: release everything still held (an incomplete
        trailing character becomes U+FFFD, as any decoder would show it)."""
        tail = self._decoder.decode(b"", final=True)
        if self.stopped:
            return ""
        out, self._held = self._held + tail, ""
        return out
