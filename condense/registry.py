"""The one shape of every extension point: ``register_*(name, obj)`` adds ``obj`` to a registry
under a new name and returns it; the ones that take a function are also decorators
(``@register_file_check("name")``). See the table in docs/structure.md."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["add_entry", "function_registrar"]


def add_entry(registry: dict, name, obj, what: str):
    """Put ``obj`` under ``name`` (registering the same object again is a no-op); ValueError when
    another object has the name. Returns ``obj``."""
    if name in registry and registry[name] is not obj:
        raise ValueError(f"a {what} named {name!r} already exists")
    registry[name] = obj
    return obj


def function_registrar(registry: dict, what: str, doc: str) -> Callable:
    """A ``register(name, fn=None)`` for a registry of functions: adds ``fn``, or returns a
    decorator that does when ``fn`` is omitted."""
    def register(name: str, fn: Callable | None = None):
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {what} needs a name, got {name!r}")

        def add(f: Callable) -> Callable:
            if not callable(f):
                raise TypeError(f"a {what} must be a function, got {type(f).__name__} for {name!r}")
            return add_entry(registry, name, f, what)

        return add if fn is None else add(fn)

    register.__doc__ = doc
    return register
