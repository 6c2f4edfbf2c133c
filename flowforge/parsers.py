"""Request bodies: JSON, and YAML DAG files posted as they are (read as {"yaml": text}).

Every body crosses dags/boundary.py before anything reads it: at most MAX_BODY_BYTES
(413 past it), JSON nested at most MAX_DEPTH levels (checked before it is parsed), and no
text the database cannot store (a 400 naming the field).
"""

from __future__ import annotations

import json

from rest_framework import renderers
from rest_framework.exceptions import APIException, ParseError, ValidationError
from rest_framework.parsers import BaseParser
from rest_framework.utils.json import strict_constant

from dags import boundary


class BodyTooLarge(APIException):
    status_code = 413
    default_detail = "the request body is too large"
    default_code = "too_large"


def read_body(stream) -> bytes:
    """The whole body, or a 413 as soon as it is longer than the limit."""
    body = stream.read(boundary.MAX_BODY_BYTES + 1) if stream is not None else b""
    try:
        boundary.check_size(len(body))
    except boundary.LimitExceeded as exc:
        raise BodyTooLarge(str(exc)) from None
    return body


def _encoding(parser_context: dict | None) -> str:
    request = (parser_context or {}).get("request")
    return getattr(request, "encoding", None) or "utf-8"


class JSONParser(BaseParser):
    media_type = "application/json"
    renderer_class = renderers.JSONRenderer

    def parse(self, stream, media_type=None, parser_context=None):
        body = read_body(stream)
        try:
            boundary.check_json_depth(body)
            data = json.loads(
                body.decode(_encoding(parser_context)), parse_constant=strict_constant
            )
        except boundary.LimitExceeded as exc:
            raise ParseError(str(exc)) from None
        except (ValueError, RecursionError) as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
        if problems := boundary.unstorable(data):
            raise ValidationError(boundary.describe(problems))
        return data


class YAMLParser(BaseParser):
    media_type = "application/yaml"

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return {"yaml": read_body(stream).decode("utf-8")}
        except UnicodeDecodeError as exc:
            raise ParseError(f"the YAML body is not UTF-8 text: {exc}") from None


class TextYAMLParser(YAMLParser):
    media_type = "text/yaml"


class XYAMLParser(YAMLParser):
    media_type = "application/x-yaml"
