"""A read-only, seekable window onto one stored (uncompressed) member of a zip file.

h5py accepts any file-like object, but ``zipfile.ZipExtFile`` seeks backwards by re-reading the
member from its start, so h5py on it reads hundreds of MB to open a large ``.keras`` file
(docs/formats.md §1.2). A stored member is a plain byte range of the archive, so we hand h5py that range.
"""

from __future__ import annotations

import io
import os
import struct
import zipfile

__all__ = ["ZipWindow", "member_data_offset"]

_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")
_LOCAL_MAGIC = b"PK\x03\x04"


def member_data_offset(path: str | os.PathLike[str], info: zipfile.ZipInfo) -> int:
    """Absolute offset of a member's first data byte: after its *local* header, name and extra field.

    The local extra field can differ in length from the central directory's (``ZipInfo.extra``), so
    both lengths are read from the local header itself.
    """
    with open(path, "rb") as fh:
        fh.seek(info.header_offset)
        header = fh.read(_LOCAL_HEADER.size)
    if len(header) != _LOCAL_HEADER.size or header[:4] != _LOCAL_MAGIC:
        raise zipfile.BadZipFile(f"bad local header for member {info.filename!r}")
    fields = _LOCAL_HEADER.unpack(header)
    name_len, extra_len = fields[-2], fields[-1]
    return info.header_offset + _LOCAL_HEADER.size + name_len + extra_len


class ZipWindow(io.RawIOBase):
    """Bytes ``[start, start + size)`` of a file, presented as a whole file."""

    def __init__(self, path: str | os.PathLike[str], start: int, size: int) -> None:
        super().__init__()
        self._fh = open(path, "rb")  # noqa: SIM115 - lives as long as the window
        self._start = start
        self._size = size
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self._size + offset
        else:
            raise ValueError(f"invalid whence {whence}")
        if pos < 0:
            raise ValueError("negative seek position")
        self._pos = pos
        return pos

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        remaining = self._size - self._pos
        if remaining <= 0:
            return 0
        want = min(len(view), remaining)
        self._fh.seek(self._start + self._pos)
        got = self._fh.readinto(view[:want])
        got = got or 0
        self._pos += got
        return got

    def close(self) -> None:
        if not self.closed:
            self._fh.close()
        super().close()
