"""Roles are ordered: member < admin < owner."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("role,needed,allowed", [
    ("member", "member", True), ("admin", "member", True), ("owner", "member", True),
    ("member", "admin", False), ("admin", "admin", True), ("owner", "admin", True),
    ("admin", "owner", False), ("owner", "owner", True),
])
def test_roles_are_ordered(role, needed, allowed):
    from aperture.services.access import Principal
    from aperture.api.errors import ApiError

    principal = Principal("key_x", "usr_x", "team-a", role)
    try:
        principal.require_role(needed)
        passed = True
    except ApiError as exc:
        assert exc.status == 403
        passed = False

    assert passed is allowed
