"""condense.registry: the one shape of every register_* call (a new name, the object back, decorators)."""

from __future__ import annotations

import pytest

from condense.registry import add_entry, function_registrar


def test_functions_register_by_call_or_decorator_and_names_are_unique():
    table: dict = {}
    register = function_registrar(table, "widget check", "Add a widget check.")
    assert register.__doc__ == "Add a widget check."

    def first(x):
        return x

    assert register("first", first) is first

    @register("second")
    def second(x):
        return -x

    assert table == {"first": first, "second": second} and second(2) == -2
    assert register("first", first) is first  # the same object again: a no-op (a module imported twice)
    with pytest.raises(ValueError, match="a widget check named 'first' already exists"):
        register("first", second)
    with pytest.raises(TypeError, match="a widget check must be a function, got int for 'third'"):
        register("third", 3)
    with pytest.raises(ValueError, match="a widget check needs a name, got ''"):
        register("", first)
    assert set(table) == {"first", "second"}


def test_add_entry_returns_the_object():
    table: dict = {}
    obj = object()
    assert add_entry(table, "k", obj, "thing") is obj and table == {"k": obj}
    with pytest.raises(ValueError, match="a thing named 'k' already exists"):
        add_entry(table, "k", object(), "thing")
