"""`get_file`: download a file once into a cache, check its hash, write it atomically."""
import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request

_CHUNK_SIZE = 1 << 16


def cache_home():
    """The cache root: `$PYLAYERS_HOME`, else `~/.pylayers`."""
    return os.environ.get("PYLAYERS_HOME") or os.path.join(os.path.expanduser("~"), ".pylayers")


def _hasher(file_hash):
    """sha256 for a 64-digit hash, md5 for a 32-digit one (as Keras' 'auto')."""
    if len(file_hash) == 64:
        return hashlib.sha256()
    if len(file_hash) == 32:
        return hashlib.md5()
    raise ValueError("file_hash must be a sha256 (64 hex digits) or md5 (32 hex digits) "
                     f"digest. Received: file_hash={file_hash!r}")


def file_digest(path, file_hash):
    """The hex digest of the file at `path`, with the algorithm `file_hash` implies."""
    digest = _hasher(file_hash)
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(_CHUNK_SIZE), b""):
            digest.update(chunk)
    return digest.hexdigest()


def get_file(fname, origin, file_hash=None, cache_dir=None, cache_subdir="datasets",
             force_download=False):
    """Download `origin` to `<cache_dir>/<cache_subdir>/<fname>` unless already there.

    Args:
        fname: the file's name in the cache (an absolute path is used as is).
        origin: the URL to fetch (http(s):// or file://).
        file_hash: expected sha256 (or md5) hex digest. A cached file that does
            not match is downloaded again; a download that does not match raises
            ValueError and leaves no file behind.
        cache_dir: the cache root; defaults to `$PYLAYERS_HOME` or `~/.pylayers`.
        cache_subdir: the folder under `cache_dir`.
        force_download: download even when the file is cached.

    Returns:
        The path of the cached file.

    The download goes to a temporary file in the cache folder, which replaces the
    target only once complete and verified, so an interrupted or corrupted
    download never leaves a partial file under the final name.
    """
    if not fname or not isinstance(fname, str):
        raise ValueError(f"get_file needs a file name. Received: fname={fname!r}")
    if file_hash is not None:
        file_hash = file_hash.lower()
        _hasher(file_hash)
    folder = os.path.join(cache_dir or cache_home(), cache_subdir)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, fname)
    if os.path.exists(path) and not force_download:
        if file_hash is None or file_digest(path, file_hash) == file_hash:
            return path
    _download_verified(origin, path, file_hash)
    return path


def _download_verified(origin, path, file_hash):
    folder, name = os.path.split(path)
    descriptor, partial = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".part")
    try:
        with os.fdopen(descriptor, "wb") as out:
            _fetch(origin, out)
        if file_hash is not None:
            actual = file_digest(partial, file_hash)
            if actual != file_hash:
                raise ValueError(f"The file downloaded from {origin} is corrupted or not the "
                                 f"expected one: its hash is {actual}, expected {file_hash}. "
                                 "Nothing was saved.")
        os.replace(partial, path)
    except BaseException:
        if os.path.exists(partial):
            os.remove(partial)
        raise


def _fetch(origin, out):
    """Copy what `origin` serves into the binary stream `out`."""
    try:
        with urllib.request.urlopen(origin) as response:
            shutil.copyfileobj(response, out, _CHUNK_SIZE)
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise OSError(f"Could not download {origin}: {reason}") from error
