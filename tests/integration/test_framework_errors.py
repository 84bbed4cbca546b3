"""What functions-framework answers itself, before our handlers, is still our JSON error."""

from __future__ import annotations

import pytest
import requests


@pytest.mark.parametrize("path", ["/v1/images/a%0Ab", "/v1/jobs/x%0D%0Ay", "/stats/a%0A.jpg/mean"])
def test_a_control_character_in_a_path_is_a_json_404(stack, path):
    function = "images" if path.startswith("/v1/images") else "jobs" if path.startswith("/v1/jobs") else "stats"

    answer = requests.get(stack.function_url(function) + path, timeout=30)

    assert answer.status_code == 404
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.json() == {"error": {"code": 404, "message": "no route for this path"}}


def test_the_gateway_forwards_such_a_path_and_the_answer_stays_json(stack):
    answer = requests.get(stack.gateway_url + "/v1/images/a%0Ab", timeout=30)

    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == 404
