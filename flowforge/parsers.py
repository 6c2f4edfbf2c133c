"""Request bodies in YAML: a DAG file posted as is, read as {"yaml": text}."""

from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser


class YAMLParser(BaseParser):
    media_type = "application/yaml"

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return {"yaml": stream.read().decode("utf-8")}
        except UnicodeDecodeError as exc:
            raise ParseError(f"the YAML body is not UTF-8 text: {exc}") from None


class TextYAMLParser(YAMLParser):
    media_type = "text/yaml"


class XYAMLParser(YAMLParser):
    media_type = "application/x-yaml"
