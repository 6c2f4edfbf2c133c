"""What the API modules of every app share: strict fields and the 409 and 400 errors.

On the ground floor (dags), so that the apps' API modules need not reach up into the
project package for them.
"""

from rest_framework import serializers
from rest_framework.exceptions import APIException, ValidationError


class StrictCharField(serializers.CharField):
    """A string, and only a string: DRF's CharField would turn 5 or true into text."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class WholeNumberField(serializers.IntegerField):
    """A JSON integer, and only that: DRF's IntegerField would take "5", 5.0 and true."""

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    """JSON true or false, and only those: DRF's BooleanField would take "yes" and 1."""

    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


class Conflict(APIException):
    """The request is well-formed but the object's state does not allow it (409).

    `fields` go into the error body next to the message (flowforge/errors.py), for
    scripts: what the object is now, say.
    """

    status_code = 409
    default_detail = "the object's current state does not allow this"
    default_code = "conflict"

    def __init__(self, detail=None, code=None, fields: dict | None = None) -> None:
        super().__init__(detail, code)
        self.fields = fields or {}


class Invalid(ValidationError):
    """A 400 whose `fields` go into the error body next to the message, as Conflict's:
    {"params": {name: problem}} for a trigger's params, say."""

    def __init__(self, detail, fields: dict) -> None:
        super().__init__(detail)
        self.fields = fields
