"""Blocks: validated by type, encrypted at rest, secrets never returned in clear."""

from __future__ import annotations

from pathlib import Path

SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"


def test_secret_fields_are_masked_in_every_response(api):
    body = {"name": "aws", "type": "aws-credentials",
            "data": {"aws_access_key_id": "AKIAEXAMPLE", "aws_secret_access_key": SECRET, "region_name": "eu-west-1"}}
    responses = [api.post(api.ws("/blocks"), json=body), api.get(api.ws("/blocks")), api.get(api.ws("/blocks/aws")),
                 api.request("PUT", api.ws("/blocks/aws"), json={"data": {**body["data"], "region_name": "us-east-1"}})]
    for response in responses:
        assert response.status_code < 300
        assert SECRET not in response.text
    data = api.ok("GET", api.ws("/blocks/aws"))["data"]
    assert data == {"aws_access_key_id": "AKIAEXAMPLE", "aws_secret_access_key": "********", "region_name": "us-east-1"}


def test_blocks_are_encrypted_at_rest(api, ctx):
    api.ok("POST", api.ws("/blocks"), json={"name": "s", "type": "secret", "data": {"value": SECRET}})
    ctx.store.close()
    for suffix in ("", "-wal"):
        path = Path(ctx.store.path + suffix)
        if path.exists():
            assert SECRET.encode() not in path.read_bytes()


def test_bad_block_input_is_named(api):
    cases = [
        ({"name": "x", "type": "nope", "data": {}}, "unknown block type 'nope'"),
        ({"name": "x", "type": "secret", "data": {}}, "data.value: required"),
        ({"name": "x", "type": "secret", "data": {"value": "v", "extra": 1}}, "data.extra: not a field"),
    ]
    for body, fragment in cases:
        response = api.post(api.ws("/blocks"), json=body)
        assert response.status_code == 422 and fragment in response.json()["detail"]
        assert SECRET not in response.text
    assert api.ok("GET", api.ws("/blocks")) == []


def test_viewer_sees_masked_blocks_but_cannot_write(api):
    api.ok("POST", api.ws("/blocks"), json={"name": "s", "type": "secret", "data": {"value": SECRET}})
    viewer = api.as_key(api.user("v", role="viewer"))
    listed = viewer.get(viewer.ws("/blocks"))
    assert listed.status_code == 200 and SECRET not in listed.text
    body = {"name": "t", "type": "secret", "data": {"value": "x"}}
    assert viewer.post(viewer.ws("/blocks"), json=body).status_code == 403
