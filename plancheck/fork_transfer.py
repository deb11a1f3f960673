"""Send one result from a forked child to its parent: pickled, with its large arrays in shared
memory rather than in the pickle.

A result with dose grids and DVHs is tens of megabytes of arrays (the sample's export: 31 MB
in 1 300 arrays). Pickled the usual way, each array is copied into the pickle, written
through a pipe, read, and copied out again (about 80 ms for the sample's export). Here the
pickle (protocol 5) keeps only the arrays' descriptions; their bytes go into an anonymous
memory file (``memfd_create``) that the parent created before the fork and maps after the
child has finished: one copy in the child (``pwrite``, about 20 ms for the sample's export:
twice as fast as through a mapping), none in the parent (the arrays are views of the
mapping, copy-on-write, writable like any array). Where there is no ``memfd_create``, the
arrays travel in the pickle.

Usage, around ``os.fork()``::

    channel = ResultChannel()          # in the parent, before the fork
    # child:  channel.send(result); os._exit(0)
    # parent: channel.parent_side()  right after the fork
    #         value = channel.receive()  reads until the child has closed its end; then reap it

References
----------
PEP 574 (pickle protocol 5 with out-of-band data); memfd_create(2).
"""

from __future__ import annotations

import mmap
import os
import pickle
from typing import Any

__all__ = ["ResultChannel", "NoResult"]

_ALIGN = 64
"""Each array's bytes start at a multiple of this in the memory file (aligned for any dtype)."""


class NoResult(Exception):
    """The child sent nothing readable (it failed before sending, or sent a truncated result)."""


def _memory_file() -> int | None:
    try:
        return os.memfd_create("plancheck-result", os.MFD_CLOEXEC)
    except (AttributeError, OSError):  # not Linux, or no memfd: the arrays go in the pickle
        return None


class ResultChannel:
    """A pipe for the pickle and a memory file for the arrays, from one child to its parent.
    Create it before the fork; the child calls :meth:`send` once, the parent
    :meth:`parent_side` right after the fork and :meth:`receive` once the child has exited."""

    def __init__(self) -> None:
        self._read: int | None
        self._write: int | None
        self._read, self._write = os.pipe()
        self._memory = _memory_file()

    # ------------------------------------------------------------------ the child
    def send(self, value: Any) -> None:
        """Pickle ``value`` into the channel (in the child). Raises what pickling raises."""
        self._close_read()
        buffers: list[pickle.PickleBuffer] = []
        if self._memory is None:
            data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
            spans: list[tuple[int, int]] | None = None
        else:
            data = pickle.dumps(value, protocol=5, buffer_callback=buffers.append)
            spans = self._write_buffers(buffers)
        header = pickle.dumps((len(data), spans), protocol=pickle.HIGHEST_PROTOCOL)
        assert self._write is not None
        write, self._write = self._write, None
        with os.fdopen(write, "wb") as out:
            out.write(len(header).to_bytes(8, "little"))
            out.write(header)
            out.write(data)

    def _write_buffers(self, buffers: list[pickle.PickleBuffer]) -> list[tuple[int, int]]:
        spans: list[tuple[int, int]] = []
        offset = 0
        for buffer in buffers:
            raw = buffer.raw()
            spans.append((offset, raw.nbytes))
            offset += -(-raw.nbytes // _ALIGN) * _ALIGN
        assert self._memory is not None
        if offset:
            os.ftruncate(self._memory, offset)
            for buffer, (start, _) in zip(buffers, spans):
                view = buffer.raw()
                while view.nbytes:  # pwrite may write less than asked
                    written = os.pwrite(self._memory, view, start)
                    view, start = view[written:], start + written
        return spans

    # ------------------------------------------------------------------ the parent
    def parent_side(self) -> None:
        """Close the child's end here (right after the fork), so that a child that dies
        without sending leaves an empty pipe, not a blocked reader."""
        if self._write is not None:
            os.close(self._write)
            self._write = None

    def receive(self) -> Any:
        """The child's value (in the parent; reads until the child closed its end).

        Raises
        ------
        NoResult
            Nothing, or not a whole result, was sent.
        """
        try:
            if self._read is None:
                raise NoResult("the channel is closed")
            read, self._read = self._read, None
            with os.fdopen(read, "rb") as stream:
                raw = stream.read()
            if len(raw) < 8:
                raise NoResult("the child sent nothing")
            size = int.from_bytes(raw[:8], "little")
            length, spans = pickle.loads(raw[8:8 + size])
            data = raw[8 + size:]
            if len(data) != length:
                raise NoResult("the child's result is truncated")
            if spans is None:
                return pickle.loads(data)
            return pickle.loads(data, buffers=self._mapped(spans))
        except NoResult:
            raise
        except Exception as exc:  # a corrupt result: the caller computes it itself
            raise NoResult(f"the child's result cannot be read: {type(exc).__name__}") from exc
        finally:
            self.close()

    def _mapped(self, spans: list[tuple[int, int]]) -> list[memoryview]:
        end = max((start + size for start, size in spans), default=0)
        if end == 0:
            return [memoryview(bytearray(0)) for _ in spans]
        assert self._memory is not None
        if os.fstat(self._memory).st_size < end:
            raise NoResult("the child's arrays are truncated")
        # private and writable: the arrays behave like any other (a write copies its page)
        view = memoryview(mmap.mmap(self._memory, end, flags=mmap.MAP_PRIVATE,
                                    prot=mmap.PROT_READ | mmap.PROT_WRITE))
        return [view[start:start + size] for start, size in spans]

    def _close_read(self) -> None:
        if self._read is not None:
            os.close(self._read)
            self._read = None

    def close(self) -> None:
        """Release the pipe and the memory file (arrays already received stay valid);
        idempotent: also for a result that is never received."""
        self._close_read()
        if self._write is not None:
            os.close(self._write)
            self._write = None
        if self._memory is not None:
            os.close(self._memory)
            self._memory = None
