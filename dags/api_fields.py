"""What the API modules of every app share: a strict string field and the 409 error.

On the ground floor (dags), so that the apps' API modules need not reach up into the
project package for them.
"""

from rest_framework import serializers
from rest_framework.exceptions import APIException


class StrictCharField(serializers.CharField):
    """A string, and only a string: DRF's CharField would turn 5 or true into text."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class Conflict(APIException):
    """The request is well-formed but the object's state does not allow it (409)."""

    status_code = 409
    default_detail = "the object's current state does not allow this"
    default_code = "conflict"
