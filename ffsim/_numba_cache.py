"""Numba's on-disk cache, invalidated by the helpers a kernel compiles in, not only by the kernel's own file.

Numba keys a cached kernel (``cache=True``) on the contents of the file that defines it.  A kernel compiles
in what it calls and the global constants it reads: the pulse kernels in ``ffsim/devices/pulse.py`` inline
the device physics of ``physics.py`` and the generators of ``rng.py``.  After an edit to one of those (a
``git pull`` into an editable install is one), Numba would load machine code compiled from the old helpers.

:func:`install` puts a cache locator in front of Numba's own for files inside the package (or another
root, see ``roots``): it keeps the folder and file names that Numba's own locator chooses, and adds to the
source stamp the contents of every module of the package that the kernel's module imports, directly or
through other modules of the package (read from their ``import`` statements).  An edit to any of them
makes the cached kernels of the importing modules stale, and Numba compiles them again; an edit elsewhere
(the CLI, the trainer) leaves them cached.

numba-cuda keeps its own copy of Numba's caching module, with its own list of locators: :func:`install_cuda`
puts the same locator there for the GPU kernels' on-disk cache (``ffsim.gpu.twin.jit_kernel``), with numba-cuda's
version added to the stamp (numba-cuda keys its index on Numba's version, not its own).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import os
from pathlib import Path

__all__ = ["install", "install_cuda", "module_closure"]

_ROOTS: dict[str, Path] = {}  # package name -> package folder


def _package_of(path: Path) -> str | None:
    for name, root in _ROOTS.items():
        if path == root or root in path.parents:
            return name
    return None


def _module_file(name: str) -> Path | None:
    """The source file of module ``name`` of a registered package (a folder's ``__init__.py``), or None."""
    top, _, rest = name.partition(".")
    root = _ROOTS.get(top)
    if root is None:
        return None
    base = root.joinpath(*rest.split(".")) if rest else root
    for f in (base.with_suffix(".py"), base / "__init__.py"):
        if f.is_file():
            return f
    return None


@functools.cache
def _imports(path: Path, mtime_ns: int, size: int) -> tuple[Path, ...]:
    """The files of the registered packages' modules that ``path`` imports by name (not their parent packages,
    whose ``__init__`` runs first but gives the importing module nothing it does not name)."""
    tree = ast.parse(path.read_bytes(), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            names += [f"{node.module}.{a.name}" for a in node.names]  # (a submodule, where it is one)
    out = {f for f in map(_module_file, names) if f is not None}
    return tuple(sorted(out))


def module_closure(path: str | os.PathLike) -> list[Path]:
    """``path`` and every module file of its package that it imports, directly or through others."""
    start = Path(path).resolve()
    seen = {start}
    todo = [start]
    while todo:
        f = todo.pop()
        st = f.stat()
        for g in _imports(f, st.st_mtime_ns, st.st_size):
            if g not in seen:
                seen.add(g)
                todo.append(g)
    return sorted(seen)


@functools.cache
def _file_hash(path: Path, mtime_ns: int, size: int) -> bytes:
    return hashlib.sha256(path.read_bytes()).digest()


def _closure_stamp(path: str) -> str:
    h = hashlib.sha256()
    for f in module_closure(path):
        st = f.stat()
        h.update(str(f).encode())
        h.update(_file_hash(f, st.st_mtime_ns, st.st_size))
    return h.hexdigest()


def install(roots: dict[str, str | os.PathLike] | None = None, caching=None, extra_stamp: str = "") -> bool:
    """Register the locator for the packages ``roots`` (name -> folder; default: ffsim itself) in the caching
    module ``caching`` (default: ``numba.core.caching``); ``extra_stamp``, where given, is added to every
    stamp the locator makes there.

    Returns False (and changes nothing) where that module has no ``CacheImpl`` (or ``_CacheImpl``) with a
    list of locator classes: its own stamps then apply, as without this module.
    """
    if caching is None:
        try:
            from numba.core import caching
        except ImportError:
            return False
    impl = getattr(caching, "CacheImpl", None) or getattr(caching, "_CacheImpl", None)  # (its older name)
    classes = getattr(impl, "_locator_classes", None)
    if not isinstance(classes, list):
        return False
    for name, root in (roots or {"ffsim": Path(__file__).resolve().parent}).items():
        _ROOTS[name] = Path(root).resolve()
    if any(getattr(c, "_ffsim_closure", False) for c in classes):
        return True

    class ClosureStampLocator(caching._CacheLocator):
        """Numba's own locator for the file, with the stamp of the file's module closure."""

        _ffsim_closure = True

        def __init__(self, inner, py_file):
            self._inner = inner
            self._py_file = py_file

        def ensure_cache_path(self):
            self._inner.ensure_cache_path()

        def get_cache_path(self):
            return self._inner.get_cache_path()

        def get_disambiguator(self):
            return self._inner.get_disambiguator()

        def get_source_stamp(self):
            try:
                closure = _closure_stamp(self._py_file)
            except (OSError, SyntaxError, ValueError):  # a module unreadable now: never match a cached entry
                closure = "unread:" + os.urandom(8).hex()
            stamp = (self._inner.get_source_stamp(), closure)
            return (*stamp, extra_stamp) if extra_stamp else stamp

        @classmethod
        def from_function(cls, py_func, py_file):
            if not os.path.isfile(py_file) or _package_of(Path(py_file).resolve()) is None:
                return None
            for other in impl._locator_classes:
                if other is cls:
                    continue
                inner = other.from_function(py_func, py_file)
                if inner is not None:
                    return cls(inner, py_file)
            return None

    classes.insert(0, ClosureStampLocator)
    return True


def install_cuda() -> bool:
    """:func:`install` for numba-cuda's caching module (``numba.cuda.core.caching``), its stamps with
    numba-cuda's version; False where numba.cuda has no such module (Numba's own CUDA target, which caches
    through ``numba.core.caching``: :func:`install` covers it)."""
    try:
        from numba.cuda.core import caching
    except ImportError:
        return False
    from importlib.metadata import PackageNotFoundError, version

    try:
        v = version("numba-cuda")
    except PackageNotFoundError:
        v = "unknown"
    return install(caching=caching, extra_stamp=f"numba-cuda {v}")
