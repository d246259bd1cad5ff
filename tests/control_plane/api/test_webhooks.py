"""Webhooks: managed per workspace, called at /hooks/<slug>; each call becomes an event or a failure event."""

from __future__ import annotations

import json

MODEL_TEMPLATE = ('{"event": "model.{{ body.action or \'updated\' }}", '
                  '"resource": {"pushpool.resource.id": "model.{{ body.model }}", "pushpool.resource.name": '
                  '"{{ body.model }}"}}')


def hook(api, name="models", template=MODEL_TEMPLATE, **fields) -> dict:
    return api.ok("POST", api.ws("/webhooks"), status=201, json={"name": name, "template": template, **fields})


def last_event(api, prefix: str) -> dict:
    return api.ok("GET", api.ws("/events"), params={"event": prefix})["events"][0]


def test_a_form_post_becomes_an_event_with_the_webhook_related(api):
    created = hook(api)
    assert created["path"] == f"/hooks/{created['slug']}" and len(created["slug"]) >= 32
    answer = api.client.post(created["path"], data={"model": "churn"})  # like curl -d model=churn
    assert answer.status_code == 202, answer.text
    event = last_event(api, "model.")
    assert answer.json() == {"id": event["id"], "event": "model.updated"}
    assert event["resource"] == {"pushpool.resource.id": "model.churn", "pushpool.resource.name": "churn"}
    assert event["related"] == [{"pushpool.resource.id": f"pushpool.webhook.{created['id']}",
                                 "pushpool.resource.name": "models", "pushpool.resource.role": "webhook"}]
    assert event["payload"]["method"] == "POST" and event["payload"]["body"] == {"model": "churn"}
    assert event["payload"]["headers"]["content-type"] == "application/x-www-form-urlencoded"


def test_json_passes_through_and_authorization_never_reaches_the_template(api):
    created = hook(api, "passthrough", "{{ body|tojson }}")
    sent = {"event": "ci.build.finished", "resource": {"pushpool.resource.id": "repo.acme"}, "payload": {"ok": True},
            "id": "evt-42", "occurred": "2026-12-01T10:00:00+00:00"}
    assert api.client.post(created["path"], json=sent, headers={"Authorization": "Bearer x"}).status_code == 202
    event = last_event(api, "ci.")
    assert (event["id"], event["payload"], event["occurred"]) == ("evt-42", {"ok": True}, "2026-12-01T10:00:00Z")
    echo = hook(api, "echo", '{"event": "echo", "resource": {"pushpool.resource.id": "x"}, '
                             '"payload": {"headers": {{ headers|tojson }}, "auth": "{{ headers.Authorization }}"}}')
    api.client.put(echo["path"], content="plain words", headers={"Authorization": "Bearer secret-key",
                                                                  "X-Custom": "1"})
    payload = last_event(api, "echo")["payload"]
    assert payload["auth"] == "" and "authorization" not in payload["headers"] and payload["headers"]["x-custom"] == "1"


def test_a_bad_template_or_bad_json_is_a_400_and_a_failure_event(api):
    broken = hook(api, "broken", '{"event": "x", "resource": {"name": "{{ body.a }}"}}')
    answer = api.client.post(broken["path"], json={"a": 1})
    assert answer.status_code == 400 and "pushpool.resource.id" in answer.json()["detail"]
    failure = last_event(api, "pushpool.webhook.failed")
    assert failure["payload"]["reason"] == answer.json()["detail"]
    assert failure["payload"]["received"]["body"] == {"a": 1}
    assert failure["payload"]["rendered"] == '{"event": "x", "resource": {"name": "1"}}'
    assert failure["resource"]["pushpool.resource.id"] == f"pushpool.webhook.{broken['id']}"
    not_json = hook(api, "notjson", "model {{ body.model }}")
    answer = api.client.post(not_json["path"], data={"model": "m"})
    assert answer.status_code == 400 and "did not render JSON" in answer.json()["detail"]
    escape = hook(api, "escape", "{{ body.__class__ }}")
    answer = api.client.post(escape["path"], json={})
    assert answer.status_code == 400 and "not allowed" in answer.json()["detail"]
    bomb = hook(api, "bomb", "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}")
    answer = api.client.post(bomb["path"], json={})
    assert answer.status_code == 400 and "longer than" in answer.json()["detail"]
    assert api.request("POST", api.ws("/webhooks"), json={"name": "syntax", "template": "{{ oops"}).status_code == 422


def test_toggle_rotate_delete(api):
    created = hook(api)
    off = api.ok("PATCH", api.ws("/webhooks/models"), json={"enabled": False})
    assert off["enabled"] is False
    assert api.client.post(created["path"], data={"model": "m"}).status_code == 404
    api.ok("PATCH", api.ws("/webhooks/models"), json={"enabled": True})
    rotated = api.ok("POST", api.ws("/webhooks/models/rotate"))
    assert rotated["slug"] != created["slug"]
    assert api.client.post(created["path"], data={"model": "m"}).status_code == 404
    assert api.client.post(rotated["path"], data={"model": "m"}).status_code == 202
    api.ok("DELETE", api.ws("/webhooks/models"), status=204)
    assert api.client.post(rotated["path"], data={"model": "m"}).status_code == 404


def test_a_service_account_key_can_be_required_and_enforced_per_workspace(api):
    account = api.ok("POST", api.ws("/service_accounts"), json={"name": "ci-bot", "role": "runner"})
    secured = hook(api, "secured", service_account="ci-bot")
    assert api.client.post(secured["path"], data={"model": "m"}).status_code == 401
    other_key = api.user("someone")
    assert api.client.post(secured["path"], data={"model": "m"},
                           headers={"Authorization": f"Bearer {other_key}"}).status_code == 401
    assert api.client.post(secured["path"], data={"model": "m"},
                           headers={"Authorization": f"Bearer {account['key']}"}).status_code == 202

    open_hook = hook(api, "open")
    api.ok("PATCH", f"/api/workspaces/{api.workspace}", json={"require_webhook_service_account": True})
    assert api.client.post(open_hook["path"], data={"model": "m"}).status_code == 403
    refused = api.request("POST", api.ws("/webhooks"), json={"name": "new", "template": MODEL_TEMPLATE})
    assert refused.status_code == 422 and "service_account" in refused.json()["detail"]
    developer = api.as_key(api.user("dev"))
    assert developer.request("PATCH", f"/api/workspaces/{api.workspace}",
                             json={"require_webhook_service_account": False}).status_code == 403


def test_event_grid_and_cloudevents_handshakes_and_cloudevents_mapping(api):
    created = hook(api, "grid", '{{ body|from_cloud_event(headers) }}')
    validation = [{"id": "1", "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
                   "data": {"validationCode": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"}}]
    answer = api.client.post(created["path"], content=json.dumps(validation),
                             headers={"aeg-event-type": "SubscriptionValidation", "Content-Type": "application/json"})
    assert answer.status_code == 200
    assert answer.json() == {"validationResponse": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"}
    options = api.client.options(created["path"], headers={"WebHook-Request-Origin": "eventgrid.azure.net"})
    assert options.status_code == 200 and options.headers["WebHook-Allowed-Origin"] == "eventgrid.azure.net"
    cloud_event = {"specversion": "1.0", "type": "Microsoft.Storage.BlobCreated", "source": "/subscriptions/s/x",
                   "subject": "/blobServices/default/containers/raw/blobs/a.csv", "id": "ce-1",
                   "time": "2026-12-01T09:00:00Z", "data": {"url": "https://x/a.csv"}}
    assert api.client.post(created["path"], json=cloud_event).status_code == 202
    event = last_event(api, "Microsoft.Storage.")
    assert event["resource"]["pushpool.resource.id"] == "/blobServices/default/containers/raw/blobs/a.csv"
    assert event["payload"] == {"data": {"url": "https://x/a.csv"}} and event["id"] == "ce-1"
