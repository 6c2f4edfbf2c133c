"""manage.py api_token: a user's token, with a role that also opens the admin to them."""

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client
from rest_framework.authtoken.models import Token

pytestmark = pytest.mark.django_db


def test_a_role_gives_a_token_and_the_admin_that_role_may_see():
    out = StringIO()
    call_command("api_token", "alice", "--role", "operator", stdout=out)
    alice = get_user_model().objects.get(username="alice")
    assert out.getvalue().strip() == Token.objects.get(user=alice).key
    assert alice.is_staff and not alice.is_superuser
    assert list(alice.groups.values_list("name", flat=True)) == ["operator"]

    again = StringIO()
    call_command("api_token", "alice", stdout=again)
    assert again.getvalue() == out.getvalue()  # the same token, not a new one

    browser = Client()
    browser.force_login(alice)
    assert browser.get("/admin/runs/dagrun/").status_code == 200
    assert browser.get("/admin/auth/user/").status_code == 403  # not the operator's
