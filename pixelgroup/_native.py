"""C++ sources of the package compiled at first use (the fused GBMS kernels, the BSDS solver).

:func:`compiled_library` builds a source once per machine with the system compiler (``$CXX``,
else ``c++``) and ``-march=native``, so an AVX-512 CPU gets AVX-512 code and an AVX2-only CPU
AVX2 code (``PIXELGROUP_NATIVE_ARCH=znver3`` builds AVX2 code anywhere, to compare the two
kinds), into ``$PIXELGROUP_CACHE_DIR`` (default ``$XDG_CACHE_HOME/pixelgroup``, else
``~/.cache/pixelgroup``; a per-user folder in the temporary directory where that is not
writable), under a name that hashes the source, the flags, the compiler's version and this
CPU's feature flags; written to a temporary file and renamed, so concurrent first uses never
load half a library. Where no compiler works, or with ``PIXELGROUP_NATIVE=0``, it returns None
(after one warning if a compile failed) and the caller runs its Python path: the same results.
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
from collections.abc import Callable
from pathlib import Path

__all__ = ["compiled_library"]

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


@functools.cache
def cpu_info() -> tuple[str, str]:
    """``(model name, flags line)`` of the first processor in ``/proc/cpuinfo`` (the one place
    the package reads it); empty strings off Linux."""
    model = flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and not model:
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = line
    except OSError:
        pass
    return model, flags


def _cpu_flags() -> str:
    return cpu_info()[1] or platform.processor()


def _build(compiler: str, flags: list[str], source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        subprocess.run(
            [compiler, *flags, "-o", tmp, str(source)],
            check=True,
            capture_output=True,
            text=True,
            timeout=300,
        )
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


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


def _load(path: Path, declare: Callable[[ctypes.CDLL], None]) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))
    declare(lib)
    return lib


@functools.cache
def compiled_library(
    source: Path, what: str, fallback: str, declare: Callable[[ctypes.CDLL], None]
) -> ctypes.CDLL | None:
    """The library built from the C++ file ``source``, with ``declare(lib)`` (its functions'
    ctypes signatures) applied once when it is loaded, or None where native code is disabled
    or cannot be built; a failed build warns once, in one line: "pixelgroup: {what} could not
    be built (reason); {fallback} (PIXELGROUP_NATIVE=0 skips the build)"."""
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
            "\n".join([source.read_text(), " ".join(flags), version, _cpu_flags()]).encode()
        ).hexdigest()[:16]
        name = f"{source.stem.lstrip('_')}_{key}.so"
        folders = _cache_dirs()
        for folder in folders:
            if (folder / name).exists():
                return _load(folder / name, declare)
        for folder in folders:
            try:
                folder.mkdir(parents=True, exist_ok=True)
                tempfile.TemporaryFile(dir=folder).close()
            except OSError:
                continue  # not writable: try the next folder
            _build(compiler, flags, source, folder / name)
            return _load(folder / name, declare)
        raise OSError(f"no writable folder for the library among {folders}")
    except (OSError, subprocess.SubprocessError) as error:
        warnings.warn(
            f"pixelgroup: {what} could not be built ({_reason(error)}); {fallback} "
            "(PIXELGROUP_NATIVE=0 skips the build)",
            RuntimeWarning,
            stacklevel=3,
        )
        return None
