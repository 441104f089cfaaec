"""The public API is exactly ``__all__``, kept sorted (as httpx's tests/test_exported_members.py)."""

import inspect

import yolo_service


def test_all_public_members_are_exported_and_sorted():
    public = [
        name
        for name, value in vars(yolo_service).items()
        if (not name.startswith("_") or name == "__version__") and not inspect.ismodule(value)
    ]
    assert yolo_service.__all__ == sorted(public, key=str.casefold)


def test_every_exported_name_resolves():
    for name in yolo_service.__all__:
        assert getattr(yolo_service, name) is not None, name
