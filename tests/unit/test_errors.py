"""The library's errors as callers meet them: built by keyword, shown by their message, found by name."""

from __future__ import annotations

import pytest

import yolo_service.errors as errors
from yolo_service.errors import InvalidRequest, Overloaded, YoloServiceError, error_class

ERRORS = [getattr(errors, name) for name in errors.__all__ if name != "error_class"]


def test_an_error_is_its_message_and_keeps_when_to_retry():
    busy = Overloaded(message="the server is busy", retry_after=3)
    assert str(busy) == "the server is busy" and busy.retry_after == 3
    assert YoloServiceError("plain").retry_after is None
    problem = InvalidRequest(message="bad", fields=[{"loc": ["body", "iou"], "msg": "too big", "type": "x"}])
    assert str(problem) == "bad" and problem.fields[0]["loc"] == ["body", "iou"] and problem.retry_after is None


@pytest.mark.parametrize("cls", ERRORS, ids=lambda cls: cls.__name__)
def test_a_response_naming_any_error_raises_that_error_whatever_its_status(cls):
    assert error_class(cls.__name__, 599) is cls
    assert issubclass(cls, YoloServiceError)


def test_a_name_the_library_does_not_have_falls_back_to_the_status():
    assert error_class("Exception", 503) is errors.ServiceUnavailable
    assert error_class(None, 599) is YoloServiceError
