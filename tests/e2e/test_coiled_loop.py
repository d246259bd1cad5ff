"""The full loop through ``coiled:push``: the control plane submits a batch job to the fake Coiled API with
the real client, a simulator runs exactly the command and environment the job was given, and the run
completes through the API. Failures, cancellation, a crashed submission and two tokens in one control plane."""

from __future__ import annotations

import importlib.util
import textwrap

import pytest

from pushpool.pushers.coiled import CoiledPusher, cluster_name
from tests.coiled_fixtures import OTHER_TOKEN, TOKEN
from tests.e2e.test_ecs_loop import wait_for_infra
from tests.fakes.crashes import die_after_first_submit, dispatch_crash_then_restart
from tests.live_server import wait_for_state

pytest.importorskip("coiled")
from tests.fakes.coiled_api import CoiledSimulator  # noqa: E402

IMAGE = "registry.example/flows:1"
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def coiled_template(block: str = "coiled", **defaults) -> dict:
    template = CoiledPusher.default_job_template()
    values = {"coiled_credentials": f"{{{{ pushpool.blocks.{block} }}}}", "memory": "8GB", **defaults}
    for name, value in values.items():
        template["variables"]["properties"][name]["default"] = value
    return template


def add_pool(create_block, create_pool, name: str, token: str) -> None:
    create_block({"name": name, "type": "coiled-credentials", "data": {"token": token}})
    create_pool(name, coiled_template(block=name))


def cluster_id(run: dict) -> int:
    return int(run["infra_id"].rpartition("/")[2])


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
def coiled_pool(live, coiled_api, project):
    client = live.client()
    add_pool(lambda body: client.request("POST", client.ws("/blocks"), json=body),
             lambda name, template: client.create_work_pool(name, "coiled:push", base_job_template=template),
             "coiled", TOKEN)
    dep = client.apply_deployment(flow_name="etl", name="nightly", entrypoint="flows.py:etl",
                                  work_pool_name="coiled", image=IMAGE, parameters={"rows": 7})
    return client, dep, CoiledSimulator(coiled_api, project)


def test_a_flow_deployed_with_the_sdk_completes_on_coiled(coiled_pool, coiled_api, live, project, monkeypatch):
    client, _, simulator = coiled_pool
    monkeypatch.chdir(project)
    monkeypatch.setenv("PUSHPOOL_API_URL", live.settings.api_url)
    monkeypatch.setenv("PUSHPOOL_API_KEY", live.key)
    spec = importlib.util.spec_from_file_location("coiled_e2e_flows", project / "flows.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dep = module.etl.deploy(name="sdk", work_pool_name="coiled", image=IMAGE, parameters={"rows": 7},
                            job_variables={"cpu": 2, "spot_policy": "spot_with_fallback"})
    run = wait_for_infra(client, client.create_flow_run(dep["id"])["id"])
    assert run["console_url"] == f"{coiled_api.url}/clusters/{cluster_id(run)}"
    job = coiled_api.job_of(cluster_id(run))
    assert job.env["PUSHPOOL_FLOW_RUN_ID"] == run["id"] and job.env["PUSHPOOL_RUN_TOKEN"]
    assert job.env["PUSHPOOL_RUN_TOKEN"] != live.key and TOKEN not in job.env.values()
    assert coiled_api.cluster(cluster_id(run)).request["options"]["spot"] is True
    assert simulator.run(cluster_id(run)) == 0, simulator.output
    assert "loaded 7 rows" in simulator.output
    assert wait_for_state(client, run["id"], FINAL)["state"]["type"] == "COMPLETED"


def test_a_non_zero_exit_ends_the_run_crashed_with_the_reason(coiled_pool, coiled_api, project):
    client, _, simulator = coiled_pool
    dep = client.apply_deployment(flow_name="etl", name="bad", entrypoint="flows.py:etl", work_pool_name="coiled",
                                  image=IMAGE, parameters={"rows": -1})
    run = wait_for_infra(client, client.create_flow_run(dep["id"])["id"])
    assert simulator.run(cluster_id(run)) == 4, simulator.output
    done = wait_for_state(client, run["id"], FINAL)
    assert done["state"]["type"] == "CRASHED" and "exit code 4" in done["state"]["message"]


def test_a_spot_reclaim_ends_the_run_crashed_saying_so(coiled_pool, coiled_api):
    client, dep, _ = coiled_pool
    run = wait_for_infra(client, client.create_flow_run(dep["id"])["id"])
    coiled_api.begin(cluster_id(run))
    coiled_api.finish(cluster_id(run), 137, cluster_state="error", reason="Spot instance interrupted",
                      output="Starting flow run\nInstance interruption notice received")
    done = wait_for_state(client, run["id"], FINAL)
    assert done["state"]["type"] == "CRASHED" and "spot VM was reclaimed" in done["state"]["message"]
    # the runner never shipped a line: `pushpool flow-run logs` reads what Coiled kept of the VM's output
    logs = client.request("GET", client.ws(f"/flow_runs/{run['id']}/logs"))
    assert logs["source"] == "infrastructure"
    assert logs["lines"] == ["Starting flow run", "Instance interruption notice received"]


def test_cancelling_a_run_stops_its_cluster(coiled_pool, coiled_api):
    client, dep, _ = coiled_pool
    run = wait_for_infra(client, client.create_flow_run(dep["id"])["id"])
    coiled_api.begin(cluster_id(run))
    assert client.cancel_flow_run(run["id"])["state"]["type"] == "CANCELLING"
    assert wait_for_state(client, run["id"], FINAL)["state"]["type"] == "CANCELLED"
    assert coiled_api.cluster(cluster_id(run)).state == "stopped"


def test_two_pools_with_different_tokens_each_use_their_own(live, coiled_api, project):
    client = live.client()
    create_block = lambda body: client.request("POST", client.ws("/blocks"), json=body)  # noqa: E731
    create_pool = lambda name, template: client.create_work_pool(name, "coiled:push",  # noqa: E731
                                                                 base_job_template=template)
    add_pool(create_block, create_pool, "team-a", TOKEN)
    add_pool(create_block, create_pool, "team-b", OTHER_TOKEN)
    used = {}
    for pool, token in (("team-a", TOKEN), ("team-b", OTHER_TOKEN)):
        dep = client.apply_deployment(flow_name="etl", name=pool, entrypoint="flows.py:etl", work_pool_name=pool,
                                      image=IMAGE)
        run = wait_for_infra(client, client.create_flow_run(dep["id"])["id"])
        used[token] = coiled_api.cluster(cluster_id(run)).token
    assert used == {TOKEN: TOKEN, OTHER_TOKEN: OTHER_TOKEN}


def test_a_crash_after_submitting_the_job_never_starts_a_second(api, ctx, clock, coiled_api, monkeypatch):
    add_pool(lambda body: api.ok("POST", api.ws("/blocks"), json=body),
             lambda name, template: api.pool(name, type="coiled:push", base_job_template=template), "coiled", TOKEN)
    dep = api.deployment("nightly", flow_name="etl", pool="coiled", image=IMAGE)
    run_id = api.run(dep["id"])["id"]
    monkeypatch.setattr(CoiledPusher, "submit", die_after_first_submit(CoiledPusher.submit))
    dispatch_crash_then_restart(ctx, clock)
    clusters = coiled_api.clusters_named(cluster_name(run_id))
    assert len(clusters) == 1 and len(coiled_api.state.jobs) == 1
    assert api.ok("GET", api.ws(f"/flow_runs/{run_id}"))["infra_id"] == f"acme/{clusters[0].cluster_id}"


def test_a_deployment_breaking_coiled_rules_is_refused_naming_the_variable(api):
    api.pool("coiled", type="coiled:push")
    for variables, named in (({"container": IMAGE, "software": "etl-env"}, "job_variables.software"),
                             ({"vm_type": "m6i.large", "cpu": 4}, "job_variables.vm_type"),
                             ({"memory": "lots"}, "job_variables.memory"),
                             ({"spot_policy": "cheap"}, "job_variables.spot_policy")):
        bad = api.post(api.ws("/deployments"), json={"flow_name": "f", "name": "d", "entrypoint": "f.py:f",
                                                     "work_pool_name": "coiled", "job_variables": variables})
        assert bad.status_code == 422 and named in bad.text, (variables, bad.text)


def test_a_flow_deployed_without_an_image_runs_in_a_software_environment_made_from_the_project(
        coiled_pool, coiled_api, live, monkeypatch, tmp_path):
    """No Docker: flow.deploy(image=None) makes a Coiled software environment of the project's requirements, the
    runner and the project's files; the run's VM has only that installed (no checkout, an empty directory)."""
    client, _, simulator = coiled_pool
    project = tmp_path / "no-docker-project"
    project.mkdir()
    (project / "requirements.txt").write_text("humanize>=4\n")
    (project / "helpers.py").write_text("GREETING = 'hello from the bundled project'\n")
    (project / "flows.py").write_text(textwrap.dedent('''
        from helpers import GREETING
        from pushpool import flow

        @flow
        def etl(rows: int = 3):
            print(GREETING, rows)
            return rows
    '''))
    login = tmp_path / "dask-config"
    login.mkdir(exist_ok=True)
    (login / "coiled.yaml").write_text(f"coiled:\n  token: {TOKEN}\n  server: {coiled_api.url}\n")
    monkeypatch.chdir(project)
    monkeypatch.setenv("PUSHPOOL_API_URL", live.settings.api_url)
    monkeypatch.setenv("PUSHPOOL_API_KEY", live.key)
    spec = importlib.util.spec_from_file_location("coiled_senv_flows", project / "flows.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.syspath_prepend(str(project))
    spec.loader.exec_module(module)
    dep = module.etl.deploy(name="no-docker", work_pool_name="coiled", parameters={"rows": 5})
    software = dep["job_variables"]["software"]
    assert dep["image"] is None and software.startswith("pushpool-")
    senv = coiled_api.state.software[("acme", software)]
    assert {"humanize", "httpx", "pydantic", "pushpool_project"} <= {p["name"] for p in senv["packages"]}
    assert coiled_api.state.builds[senv["build_id"]]["state"] == "built"  # the deploy waited for the build

    again = module.etl.deploy(name="no-docker", work_pool_name="coiled", parameters={"rows": 5})
    assert again["job_variables"]["software"] == software
    assert len([b for b in coiled_api.state.builds.values() if b["software"] == software]) == 1  # not rebuilt

    run = wait_for_infra(client, client.create_flow_run(dep["id"])["id"])
    cluster = coiled_api.cluster(cluster_id(run))
    assert cluster.request["env_name"] == software and cluster.request["extra_user_container"] is None
    assert simulator.run(cluster_id(run)) == 0, simulator.output
    assert "hello from the bundled project 5" in simulator.output
    assert wait_for_state(client, run["id"], FINAL)["state"]["type"] == "COMPLETED"

    (project / "helpers.py").write_text("GREETING = 'changed'\n")  # a change in the project: a new environment
    changed = module.etl.deploy(name="no-docker", work_pool_name="coiled")
    assert changed["job_variables"]["software"] != software


def test_a_requirement_coiled_cannot_install_fails_the_deploy_naming_it(coiled_pool, coiled_api, monkeypatch,
                                                                        tmp_path, live):
    project = tmp_path / "broken-project"
    project.mkdir()
    (project / "requirements.txt").write_text("no-such-package==1.0\n")
    coiled_api.state.unknown_requirements.add("no-such-package")
    login = tmp_path / "dask-config"
    login.mkdir(exist_ok=True)
    (login / "coiled.yaml").write_text(f"coiled:\n  token: {TOKEN}\n  server: {coiled_api.url}\n")
    monkeypatch.setenv("PUSHPOOL_API_URL", live.settings.api_url)
    monkeypatch.setenv("PUSHPOOL_API_KEY", live.key)
    from pushpool.coiled_software import CoiledSoftwareError
    from pushpool.deployments import RunnerDeployment, deploy

    deployment = RunnerDeployment(flow_name="etl", name="broken", entrypoint="flows.py:etl", project_root=project,
                                  parameter_schema={}, work_pool_name="coiled")
    with pytest.raises(CoiledSoftwareError, match="could not build the software environment"):
        deploy(deployment, quiet=True)
    client = live.client()
    assert all(d["name"] != "broken" for d in client.request("GET", client.ws("/deployments")))


def test_a_tenant_cannot_point_the_control_plane_at_another_coiled_server(api):
    """The server is the operator's (PUSHPOOL_COILED_SERVER); a credentials block naming one is refused."""
    bad = api.post(api.ws("/blocks"), json={"name": "evil", "type": "coiled-credentials",
                                            "data": {"token": "x-1", "server": "http://169.254.169.254"}})
    assert bad.status_code == 422 and "data.server" in bad.text
    api.ok("POST", api.ws("/blocks"), json={"name": "ok", "type": "coiled-credentials", "data": {"token": "x-1"}})
    assert api.ok("GET", api.ws("/blocks/ok"))["data"] == {"token": "********"}
