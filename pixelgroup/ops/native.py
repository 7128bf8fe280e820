"""The fused small-D GBMS kernels (``_gbms_small_dim.cpp``), compiled at first use.

The C++ source is built once per machine with the system compiler (``$CXX``, else ``c++``)
and ``-march=native``, so an AVX-512 CPU gets AVX-512 code and an AVX2-only CPU AVX2 code
(``PIXELGROUP_NATIVE_ARCH=znver3`` builds AVX2 code anywhere, to compare the two kinds),
into ``$PIXELGROUP_CACHE_DIR`` (default ``$XDG_CACHE_HOME/pixelgroup``, else
``~/.cache/pixelgroup``; a per-user folder in the temporary directory where that is not
writable), under a name that hashes the source, the flags, the compiler's
version and this CPU's feature flags; written to a temporary file and renamed, so concurrent
first uses never load half a library. The build took 4.6-5.1 s on the AVX-512 kind (gcc 12).
Where no compiler works, or with ``PIXELGROUP_NATIVE=0``, :func:`small_dim_kernels` returns
None (after one warning if a compile failed) and the layer runs its torch path: same results
within rounding.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

__all__ = ["small_dim_kernels", "MAX_NATIVE_DIM"]

MAX_NATIVE_DIM = 8
_SOURCE = Path(__file__).with_name("_gbms_small_dim.cpp")
_FLAGS = ["-O3", "-fno-math-errno", "-fno-exceptions", "-fno-rtti", "-std=c++17", "-shared"]
_FLAGS += ["-fPIC"]


def _flags() -> list[str]:
    return [*_FLAGS, f"-march={os.environ.get('PIXELGROUP_NATIVE_ARCH', 'native')}"]


def _cache_dirs() -> list[Path]:
    """Where the library may live, in order: the user's cache folder, then a per-user folder
    in the system's temporary directory (for a read-only home)."""
    if os.environ.get("PIXELGROUP_CACHE_DIR"):
        first = Path(os.environ["PIXELGROUP_CACHE_DIR"])
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        first = Path(base) / "pixelgroup"
    return [first, Path(tempfile.gettempdir()) / f"pixelgroup-{os.getuid()}"]


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line
    except OSError:
        pass
    return platform.processor()


def _build(compiler: str, flags: list[str], target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        subprocess.run(
            [compiler, *flags, "-o", tmp, str(_SOURCE)],
            check=True,
            capture_output=True,
            text=True,
            timeout=300,
        )
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _load(path: Path) -> ctypes.CDLL:
    """The library at ``path``, with the result types of its two layout queries
    (``pg_block_rows``, ``pg_chunk_columns``) declared."""
    lib = ctypes.CDLL(str(path))
    for query in (lib.pg_block_rows, lib.pg_chunk_columns):
        query.restype = ctypes.c_int64
    return lib


def _reason(error: OSError | subprocess.SubprocessError) -> str:
    """One line: the command and its exit status with its first error message, or the OS
    error."""
    if isinstance(error, subprocess.CalledProcessError):
        lines = (error.stderr or "").strip().splitlines()
        first = [line.strip() for line in lines if "error" in line][:1] or lines[-1:]
        return f"{error.cmd[0]} exited with status {error.returncode}" + "".join(
            f": {line}" for line in first
        )
    return str(error).splitlines()[0] if str(error) else type(error).__name__


@functools.cache
def small_dim_kernels() -> ctypes.CDLL | None:
    """The compiled kernels (``pg_forward_f32_d3``, ``pg_backward_f64_d8``, ...), or None
    where they are disabled or cannot be built (then the torch path runs)."""
    if os.environ.get("PIXELGROUP_NATIVE", "1") == "0" or platform.system() != "Linux":
        return None
    compiler = shutil.which(os.environ.get("CXX", "c++"))
    if compiler is None:
        return None
    try:
        version = subprocess.run(
            [compiler, "--version"], check=True, capture_output=True, text=True, timeout=60
        ).stdout
        flags = _flags()
        key = hashlib.sha256(
            "\n".join([_SOURCE.read_text(), " ".join(flags), version, _cpu_flags()]).encode()
        ).hexdigest()[:16]
        name = f"gbms_small_dim_{key}.so"
        folders = _cache_dirs()
        for folder in folders:
            if (folder / name).exists():
                return _load(folder / name)
        for folder in folders:
            try:
                folder.mkdir(parents=True, exist_ok=True)
                tempfile.TemporaryFile(dir=folder).close()
            except OSError:
                continue  # not writable: try the next folder
            _build(compiler, flags, folder / name)
            return _load(folder / name)
        raise OSError(f"no writable folder for the library among {folders}")
    except (OSError, subprocess.SubprocessError) as error:
        warnings.warn(
            f"pixelgroup: the fused small-D GBMS kernels could not be built ({_reason(error)}); "
            "the GBMS layer runs its torch path (PIXELGROUP_NATIVE=0 skips the build)",
            RuntimeWarning,
            stacklevel=2,
        )
        return None
