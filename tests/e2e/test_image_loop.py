"""A flow deployed with ``image=DockerImage(...)`` runs from that image: the daemonless build pushes it to
a real registry, the deployment records it by digest, ``ecs:push`` (on moto) submits a task with that
digest, and the task's command and environment run inside the pulled image until the run completes."""

from __future__ import annotations

import importlib.util
import sys

from pushpool import DockerImage
from pushpool.images.registry import Registry
from tests.e2e.test_ecs_loop import ecs_template, make_block, wait_for_infra
from tests.fakes.images import push_base_image, run_image
from tests.live_server import wait_for_state

FLOW = '''import six
from pushpool import flow


@flow
def etl(rows: int = 3):
    print(f"six {six.__version__}: loaded {rows} rows")
    return rows
'''


def test_a_deployment_built_as_an_image_runs_from_its_digest(live, aws, oci_registries, tmp_path, monkeypatch):
    registry = Registry(oci_registries["open"])
    base = push_base_image(registry)
    project = tmp_path / "project"
    project.mkdir()
    (project / "flows.py").write_text(FLOW)
    (project / "requirements.txt").write_text("six==1.16.0\n")
    monkeypatch.chdir(project)
    monkeypatch.setenv("PUSHPOOL_API_URL", live.settings.api_url)
    monkeypatch.setenv("PUSHPOOL_API_KEY", live.key)
    client = live.client()
    make_block(lambda body: client.request("POST", client.ws("/blocks"), json=body))
    client.create_work_pool("ecs", "ecs:push", base_job_template=ecs_template())
    spec = importlib.util.spec_from_file_location("image_loop_flows", project / "flows.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)

    image = DockerImage(f"{registry.host}/e2e/flows", base_image=base, backend="daemonless")
    deployment = module.etl.deploy(name="from-image", work_pool_name="ecs", image=image, parameters={"rows": 5})
    repository, digest = deployment["image"].split("@")
    assert repository == f"{registry.host}/e2e/flows" and digest.startswith("sha256:")

    run = wait_for_infra(client, client.create_flow_run(deployment["id"])["id"])
    task = aws.task(run["infra_id"])
    assert task.containers[0].image == deployment["image"]  # the pusher received the digest
    override = task.overrides["containerOverrides"][0]
    env = {e["name"]: e["value"] for e in override.get("environment", [])}
    exit_code, output = run_image(deployment["image"], env=env, command=override.get("command"), registry=registry)
    aws.stop(run["infra_id"], exit_code=exit_code)
    assert exit_code == 0, output
    assert "six 1.16.0: loaded 5 rows" in output
    assert wait_for_state(client, run["id"], {"COMPLETED", "FAILED", "CRASHED"})["state"]["type"] == "COMPLETED"
