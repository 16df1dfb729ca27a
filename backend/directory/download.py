"""Fetch the extraction file: a URL through the outbound client, or a local file.

The ANS serves a ZIP holding one `.txt`; data.gouv.fr the text itself. Both are read as
UTF-8 lines; a ZIP is recognised by its content, not by its name.
"""

from __future__ import annotations

import io
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from backend.config import Settings
from backend.directory.outbound import outbound_client

DOWNLOAD_TIMEOUT = httpx.Timeout(30.0, read=120.0)
MAX_DOWNLOAD_BYTES = 1 << 30


class DownloadFailed(RuntimeError):
    """The extraction could not be fetched; the directory in place stays as it is."""


def download(url: str, settings: Settings, into: Path) -> Path:
    """Stream `url` into a file under `into`; refuse anything but a 2xx answer."""
    target = into / "extraction.download"
    size = 0
    try:
        with (
            outbound_client(settings, timeout=DOWNLOAD_TIMEOUT) as client,
            client.stream("GET", url) as response,
        ):
            response.raise_for_status()
            with target.open("wb") as out:
                for chunk in response.iter_bytes(1 << 20):
                    size += len(chunk)
                    if size > MAX_DOWNLOAD_BYTES:
                        raise DownloadFailed(f"{url}: larger than {MAX_DOWNLOAD_BYTES} bytes")
                    out.write(chunk)
    except httpx.HTTPError as exc:
        raise DownloadFailed(f"{url}: {type(exc).__name__}: {exc}") from exc
    return target


@contextmanager
def extraction_lines(path: Path) -> Iterator[Iterator[str]]:
    """The extraction's text lines, from the plain file or the ZIP's one `.txt` member."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            members = [m for m in archive.namelist() if m.lower().endswith(".txt")]
            if len(members) != 1:
                raise DownloadFailed(f"{path.name}: expected one .txt in the ZIP")
            with archive.open(members[0]) as raw:
                yield iter(io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline=""))
        return
    with path.open(encoding="utf-8", errors="replace", newline="") as text:
        yield iter(text)


@contextmanager
def opened_source(source: str | None, settings: Settings) -> Iterator[Iterator[str]]:
    """A local path, or an http(s) URL (default: ESTAFETTE_DIRECTORY_URL), as lines."""
    source = source or settings.directory_url
    if source.startswith(("http://", "https://")):
        with tempfile.TemporaryDirectory(prefix="estafette-directory-") as folder:
            path = download(source, settings, Path(folder))
            with extraction_lines(path) as lines:
                yield lines
        return
    path = Path(source)
    if not path.is_file():
        raise DownloadFailed(f"{source} is not a readable file")
    with extraction_lines(path) as lines:
        yield lines
