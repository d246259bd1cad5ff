"""The full loop through ``modal:push``: the control plane creates a sandbox on the fake Modal API, a
simulator runs exactly the entrypoint and environment the sandbox was given, and the run completes
through the API. Failures, cancellation, a crashed submission and two tokens in one control plane too."""

from __future__ import annotations

import importlib.util
import textwrap

import pytest

from pushpool.pushers.modal import ModalPusher
from tests.e2e.test_ecs_loop import wait_for_infra
from tests.fakes.crashes import die_after_first_submit, dispatch_crash_then_restart
from tests.live_server import wait_for_state
from tests.modal_fixtures import OTHER_TOKEN, TOKEN

pytest.importorskip("modal")
from tests.fakes.modal_api import ModalSimulator  # noqa: E402

IMAGE = "registry.example/flows:1"
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def modal_template(block: str = "modal", **defaults) -> dict:
    template = ModalPusher.default_job_template()
    values = {"modal_credentials": f"{{{{ pushpool.blocks.{block} }}}}", "app_name": "flows", **defaults}
    for name, value in values.items():
        template["variables"]["properties"][name]["default"] = value
    return template


def add_pool(create_block, create_pool, name: str, token: tuple[str, str]) -> None:
    create_block({"name": name, "type": "modal-credentials",
                  "data": {"token_id": token[0], "token_secret": token[1]}})
    create_pool(name, modal_template(block=name))


@pytest.fixture
def project(tmp_path):
    (tmp_path / "flows.py").write_text(textwrap.dedent('''
        import sys

        from pushpool import flow

        @flow
        def etl(rows: int = 3):
            print(f"loaded {rows} rows")
            if rows < 0:
                sys.exit(4)
            return rows
    '''))
    return tmp_path


@pytest.fixture
def modal_pool(live, modal_api, project):
    client = live.client()
    add_pool(lambda body: client.request("POST", client.ws("/blocks"), json=body),
             lambda name, template: client.create_work_pool(name, "modal:push", base_job_template=template),
             "modal", TOKEN)
    dep = client.apply_deployment(flow_name="etl", name="nightly", entrypoint="flows.py:etl", work_pool_name="modal",
                                  image=IMAGE, parameters={"rows": 7})
    return client, dep, ModalSimulator(modal_api, project)


def test_a_flow_deployed_with_the_sdk_completes_on_modal(modal_pool, modal_api, live, project, monkeypatch):
    client, _, simulator = modal_pool
    monkeypatch.chdir(project)
    monkeypatch.setenv("PUSHPOOL_API_URL", live.settings.api_url)
    monkeypatch.setenv("PUSHPOOL_API_KEY", live.key)
    spec = importlib.util.spec_from_file_location("modal_e2e_flows", project / "flows.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dep = module.etl.deploy(name="sdk", work_pool_name="modal", image=IMAGE, parameters={"rows": 7})
    run = wait_for_infra(client, client.create_flow_run(dep["id"])["id"])
    assert run["console_url"] == f"https://modal.com/id/{run['infra_id']}"
    sandbox = modal_api.sandbox(run["infra_id"])
    assert sandbox.env["PUSHPOOL_FLOW_RUN_ID"] == run["id"] and sandbox.env["PUSHPOOL_RUN_TOKEN"]
    assert simulator.run(run["infra_id"]) == 0, simulator.output
    assert "loaded 7 rows" in simulator.output
    assert wait_for_state(client, run["id"], FINAL)["state"]["type"] == "COMPLETED"


def test_a_non_zero_return_code_ends_the_run_crashed(modal_pool, modal_api):
    client, dep, _ = modal_pool
    run = wait_for_infra(client, client.create_flow_run(dep["id"])["id"])
    modal_api.finish(run["infra_id"], 4, message="Process exited with code 4")
    done = wait_for_state(client, run["id"], FINAL)
    assert done["state"]["type"] == "CRASHED" and "exit code 4" in done["state"]["message"]


def test_cancelling_a_run_terminates_its_sandbox(modal_pool, modal_api):
    client, dep, _ = modal_pool
    run = wait_for_infra(client, client.create_flow_run(dep["id"])["id"])
    assert client.cancel_flow_run(run["id"])["state"]["type"] == "CANCELLING"
    assert wait_for_state(client, run["id"], FINAL)["state"]["type"] == "CANCELLED"
    assert modal_api.sandbox(run["infra_id"]).finished


def test_two_pools_with_different_tokens_each_use_their_own(live, modal_api, project):
    client = live.client()
    create_block = lambda body: client.request("POST", client.ws("/blocks"), json=body)  # noqa: E731
    create_pool = lambda name, template: client.create_work_pool(name, "modal:push",  # noqa: E731
                                                                 base_job_template=template)
    add_pool(create_block, create_pool, "team-a", TOKEN)
    add_pool(create_block, create_pool, "team-b", OTHER_TOKEN)
    tokens = {}
    for pool, token in (("team-a", TOKEN), ("team-b", OTHER_TOKEN)):
        dep = client.apply_deployment(flow_name="etl", name=pool, entrypoint="flows.py:etl", work_pool_name=pool,
                                      image=IMAGE)
        run = wait_for_infra(client, client.create_flow_run(dep["id"])["id"])
        tokens[token[0]] = modal_api.sandbox(run["infra_id"]).token_id
    assert tokens == {TOKEN[0]: TOKEN[0], OTHER_TOKEN[0]: OTHER_TOKEN[0]}


def test_a_crash_after_creating_the_sandbox_never_creates_a_second(api, ctx, clock, modal_api, monkeypatch):
    add_pool(lambda body: api.ok("POST", api.ws("/blocks"), json=body),
             lambda name, template: api.pool(name, type="modal:push", base_job_template=template), "modal", TOKEN)
    dep = api.deployment("nightly", flow_name="etl", pool="modal", image=IMAGE)
    run_id = api.run(dep["id"])["id"]
    monkeypatch.setattr(ModalPusher, "submit", die_after_first_submit(ModalPusher.submit))
    dispatch_crash_then_restart(ctx, clock)
    assert len(modal_api.sandboxes_of_run(run_id)) == 1
    assert api.ok("GET", api.ws(f"/flow_runs/{run_id}"))["infra_id"] == modal_api.sandboxes_of_run(run_id)[0].sandbox_id
