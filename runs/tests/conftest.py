from runs.tests.api_helpers import admin, anonymous, operator, viewer  # noqa: F401
