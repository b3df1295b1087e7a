"""The one helper that turns a runtime's multi-line exception into an error line's detail."""
from __future__ import annotations

from edgekit.errors import first_line


def test_first_line_of_a_runtime_dump() -> None:
    exc = RuntimeError("\n  Exception from src/core.cpp:84:\nCheck 'x' failed\n")
    assert first_line(exc) == "Exception from src/core.cpp:84:"
    assert first_line(exc, 9) == "Exception"


def test_empty_message_gives_the_type_or_the_default() -> None:
    assert first_line(ValueError()) == "ValueError"
    assert first_line(ValueError("  \n "), default="") == ""


def test_every_error_is_in_the_tree_and_exported() -> None:
    """errors.py draws the tree in its docstring; every class there is exported from edgekit,
    and no other module defines an EdgekitError of its own."""
    import inspect
    import pkgutil
    import re

    import edgekit
    from edgekit import errors

    classes = {name for name, obj in vars(errors).items()
               if inspect.isclass(obj) and issubclass(obj, errors.EdgekitError)}
    drawn = set(re.findall(r"[├└]── (\w+)", errors.__doc__)) | {"EdgekitError"}
    assert drawn == classes
    assert set(edgekit.__all__) == classes | {"__version__"}
    for name in classes:
        assert getattr(edgekit, name) is getattr(errors, name)
    stack: list[tuple[int, type]] = [(-1, errors.EdgekitError)]  # the tree, by indentation
    checked = 0
    for line in errors.__doc__.splitlines():
        found = re.search(r"[├└]── (\w+)", line)
        if not found:
            continue
        depth = found.start()
        while stack[-1][0] >= depth:
            stack.pop()
        cls = getattr(errors, found.group(1))
        assert cls.__bases__ == (stack[-1][1],), (cls, stack[-1][1])
        stack.append((depth, cls))
        checked += 1
    assert checked == len(classes) - 1
    assert errors.UsageError.exit_code == 2 and errors.ConnectionFailed.exit_code == 1
    # No EdgekitError subclass hides elsewhere in the package (the agent is stdlib-only).
    import importlib

    for info in pkgutil.walk_packages(edgekit.__path__, "edgekit."):
        if info.name.endswith("__main__") or info.name.startswith("edgekit._targets"):
            continue
        try:
            module = importlib.import_module(info.name)
        except ImportError:  # an optional runtime's module (e.g. plotting) without its package
            continue
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and issubclass(obj, errors.EdgekitError) and \
                    obj.__module__ == info.name:
                assert info.name == "edgekit.errors", f"{info.name}.{name}"
