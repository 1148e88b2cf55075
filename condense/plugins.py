"""Plugins: the modules a child process must import so that what a user registered in this process
exists there too.

Conversions (and other heavy work) run in a child process (:mod:`condense._child`). What the parent
knows only because a user's module ran there (a file check added with
:func:`condense.export.file_checks.register_file_check`, a custom Keras layer registered with
``keras.saving.register_keras_serializable``) must be rebuilt in the child the same way: by importing
that module. :func:`plugin_modules` lists them (found from the registries, plus any the caller names,
like Keras's ``custom_object_scope``); the child's :func:`condense._child.child_main` imports them
(:func:`import_plugins`) before it loads a model. An export format itself travels as data (its
:class:`~condense.export.formats.ExportFormat` fields), so a format registered in a script works;
a check or layer defined in a script (``__main__``) cannot be imported by another process, and that
is refused with the object's name.
"""

from __future__ import annotations

import importlib
import sys
import zipfile
from pathlib import Path
from typing import Iterable

# Deferred on purpose: Keras is imported inside the functions that use it, so importing this module stays light.

__all__ = ["plugin_modules", "import_plugins"]

#: Module prefixes that every child imports anyway (never listed as plugins).
_BUILT_IN = ("condense", "keras", "tensorflow", "tf_keras", "builtins")


def _is_built_in(module: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in _BUILT_IN)


def _root_of(module: str) -> str | None:
    """The folder to put on ``sys.path`` so that ``import module`` finds the file it was loaded from."""
    loaded = sys.modules.get(module)
    file = getattr(loaded, "__file__", None)
    if not file:
        return None
    path = Path(file).resolve()
    levels = module.count(".") + (1 if path.name == "__init__.py" else 0)
    return str(path.parents[levels])


def _registered_objects() -> list[tuple[str, str, str, str]]:
    """(kind, name, what, module) of everything registered in this process that a child cannot know by itself."""
    found = []
    checks = sys.modules.get("condense.export.file_checks")
    for name, check in getattr(checks, "FILE_CHECKS", {}).items():
        found.append(("check", name, f"file check {name!r}", getattr(check, "__module__", "") or ""))
    if "keras" in sys.modules:  # a custom layer can only be registered after Keras was imported
        import keras

        for name, obj in keras.saving.get_custom_objects().items():
            found.append(("keras", name, f"Keras object {name!r}", getattr(obj, "__module__", "") or ""))
    return found


def _model_configs(paths: Iterable) -> str:
    """The architecture JSON of the ``.keras`` files (what names their custom objects); '' for one unreadable."""
    texts = []
    for path in paths:
        try:
            with zipfile.ZipFile(path) as archive:
                texts.append(archive.read("config.json").decode("utf-8", "replace"))
        except (OSError, KeyError, zipfile.BadZipFile):
            continue  # the parent's own checks name a bad model file
    return "\n".join(texts)


def plugin_modules(extra: Iterable[str] = (), *, checks: Iterable[str] | None = None,
                   models: Iterable = ()) -> list[dict]:
    """The modules a child must import: ``[{"module": name, "path": folder or None}]``.

    Args:
        extra: more module names to import in the child (e.g. one that defines custom layers
            used through ``custom_objects`` rather than a registration).
        checks: the file checks the child will run (None: any registered one may be).
        models: the ``.keras`` files the child will load: a Keras object defined in a script
            matters only when one of them names it.

    Raises:
        ValueError: something the child needs was registered in ``__main__`` (a script), which a
            child cannot import, or an ``extra`` module cannot be imported here.
    """
    needed_checks = None if checks is None else set(checks)
    configs = _model_configs(models)
    modules: dict[str, None] = {}
    for kind, name, what, module in _registered_objects():
        if module == "__main__":
            needed = (needed_checks is None or name in needed_checks) if kind == "check" else \
                (name in configs or name.rpartition(">")[2] in configs)
            if needed:
                raise ValueError(f"the {what} is defined in a script (__main__); work runs in a child process that "
                                 "imports what you registered by module: move it into a module and import that")
            continue  # defined in a script but not used by this work: the child does without it
        if module and not _is_built_in(module):
            modules[module] = None
    for module in extra:
        if not isinstance(module, str) or not module:
            raise ValueError(f"a plugin is a module name, got {module!r}")
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ValueError(f"plugin module {module!r} cannot be imported: {exc}") from None
        modules[module] = None
    return [{"module": m, "path": _root_of(m)} for m in modules]


def import_plugins(entries: Iterable[dict]) -> None:
    """Import the :func:`plugin_modules` of the parent (in the child, before any model is loaded)."""
    for entry in entries:
        path = entry.get("path")
        if path and path not in sys.path:
            sys.path.insert(0, path)
        importlib.import_module(entry["module"])
