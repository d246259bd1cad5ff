"""flow.deploy / to_deployment / deploy(...) and run_deployment against a real embedded server."""

from __future__ import annotations

import importlib.util
import sys
import textwrap

import pytest

from pushpool import Cron, DockerImage, Interval, deploy, run_deployment
from pushpool.control_plane.errors import InvalidInput
from pushpool.runs import RunTimeout

FLOWS = textwrap.dedent('''
    from pushpool import flow

    @flow(name="etl-job")
    def etl(source: str, limit: int = 10):
        """Extract, transform, load."""
        print(f"etl {source} {limit}")
        return limit

    @flow
    def clean_up(days: int = 7):
        print(f"cleaning {days}")
''')


@pytest.fixture
def project(tmp_path, monkeypatch, live):
    root = tmp_path / "proj"
    (root / "pipelines").mkdir(parents=True)
    (root / "pipelines" / "jobs.py").write_text(FLOWS)
    monkeypatch.chdir(root)
    spec = importlib.util.spec_from_file_location("proj_jobs", root / "pipelines" / "jobs.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["proj_jobs"] = module
    spec.loader.exec_module(module)
    monkeypatch.setenv("PUSHPOOL_API_URL", live.settings.api_url)
    monkeypatch.setenv("PUSHPOOL_API_KEY", live.key)
    live.client().create_work_pool("local", "local:push")
    return root, module


def test_flow_deploy_derives_entrypoint_schema_and_working_dir(project, live):
    root, module = project
    deployment = module.etl.deploy(name="nightly", work_pool_name="local", cron="0 3 * * *",
                                   parameters={"source": "s3"}, tags=["etl"], version="7")
    assert deployment["flow_name"] == "etl-job" and deployment["name"] == "nightly"
    assert deployment["entrypoint"] == "pipelines/jobs.py:etl"
    assert deployment["parameter_schema"]["required"] == ["source"]
    assert deployment["job_variables"] == {"working_dir": str(root.resolve())}
    assert deployment["description"] == "Extract, transform, load."
    again = module.etl.deploy(name="nightly", work_pool_name="local", cron="0 3 * * *",
                              parameters={"source": "s3"}, tags=["etl"], version="7")
    assert again == deployment


def test_deploy_many_with_one_image(project, live):
    _, module = project
    applied = deploy(
        module.etl.to_deployment("a", parameters={"source": "x"}, schedules=[Cron("0 9 * * *", timezone="Asia/Tokyo")]),
        module.clean_up.to_deployment("b", schedules=[Interval(3600, parameters={"days": 1})]),
        work_pool_name="local", image=DockerImage("registry.local/team/flows", tag="v3"), build=False,
    )
    assert [d["image"] for d in applied] == ["registry.local/team/flows:v3"] * 2
    assert applied[0]["schedules"][0]["timezone"] == "Asia/Tokyo"
    assert applied[1]["schedules"][0]["parameters"] == {"days": 1}


def test_deploy_builds_a_shared_image_once_and_records_it_by_digest(project, oci_registries, monkeypatch):
    from pushpool.images import build as daemonless
    from pushpool.images.registry import Registry
    from tests.fakes.images import push_base_image

    _, module = project
    registry = Registry(oci_registries["open"])
    base = push_base_image(registry)
    builds = []
    real = daemonless.build_daemonless
    monkeypatch.setattr(daemonless, "build_daemonless", lambda *a, **k: builds.append(a) or real(*a, **k))
    image = DockerImage(f"{registry.host}/deploy/flows", base_image=base, backend="daemonless")
    applied = deploy(module.etl.to_deployment("a", parameters={"source": "x"}), module.clean_up.to_deployment("b"),
                     work_pool_name="local", image=image, quiet=True)
    assert len(builds) == 1
    refs = {d["image"] for d in applied}
    assert len(refs) == 1
    repository, digest = refs.pop().split("@")
    assert repository == f"{registry.host}/deploy/flows" and registry.get_manifest("deploy/flows", digest)[2] == digest
    one = module.etl.deploy(name="single", work_pool_name="local", image=image, parameters={"source": "s"})
    assert one["image"] == applied[0]["image"]  # unchanged project: same digest, nothing rebuilt


def test_an_unknown_pool_is_refused_before_any_build(project, monkeypatch):
    from pushpool.images import build as daemonless

    _, module = project
    monkeypatch.setattr(daemonless, "build_daemonless", lambda *a, **k: pytest.fail("built before checking pools"))
    with pytest.raises(InvalidInput, match="work pool 'nope' does not exist"):
        module.etl.deploy(name="img", work_pool_name="nope", image=DockerImage("x/y", backend="daemonless"),
                          parameters={"source": "s"})


def test_unknown_pool_names_the_fix(project):
    _, module = project
    with pytest.raises(InvalidInput, match="work pool 'nope' does not exist; create it with"):
        module.etl.deploy(name="x", work_pool_name="nope", parameters={"source": "s"})


def test_run_deployment_waits_or_not(project, live):
    _, module = project
    module.etl.deploy(name="adhoc", work_pool_name="local", parameters={"source": "db"})
    run = run_deployment("etl-job/adhoc", parameters={"limit": 3}, timeout=60, poll_seconds=0.2)
    assert run.state.type.value == "COMPLETED" and run.parameters == {"source": "db", "limit": 3}
    started = run_deployment("etl-job/adhoc", timeout=0)
    assert started.state.type.value == "SCHEDULED"
    with pytest.raises(RunTimeout, match="still"):
        run_deployment("etl-job/adhoc", scheduled_time=run.scheduled_time.replace(year=run.scheduled_time.year + 5),
                       timeout=0.5,
                       poll_seconds=0.1)


def test_invalid_parameters_are_a_validation_error_with_fields(project, live):
    from pushpool.errors import ValidationError

    _, module = project
    module.etl.deploy(name="typed", work_pool_name="local", parameters={"source": "db"})
    with pytest.raises(ValidationError) as info:
        run_deployment("etl-job/typed", parameters={"limit": "many"}, timeout=0)
    assert info.value.fields == ["parameters.limit"]


def test_deployment_triggers_become_automations_that_run_it(project, live):
    from pushpool import DeploymentTrigger

    _, module = project
    upstream = module.clean_up.deploy(name="first", work_pool_name="local")
    trigger = DeploymentTrigger(expect=["pushpool.flow-run.Completed"],
                                match_related={"pushpool.resource.id": f"pushpool.deployment.{upstream['id']}"},
                                parameters={"source": "{{ flow_run.name }}"})
    downstream = module.etl.deploy(name="after-cleanup", work_pool_name="local", parameters={"source": "s"},
                                   triggers=[trigger])
    client = live.client()
    [automation] = client.request("GET", client.ws("/automations"))
    assert automation["owner_deployment_id"] == downstream["id"]
    assert automation["actions"][0]["parameters"] == {"source": "{{ flow_run.name }}"}
    module.etl.deploy(name="after-cleanup", work_pool_name="local", parameters={"source": "s"}, triggers=[trigger])
    assert [a["id"] for a in client.request("GET", client.ws("/automations"))] == [automation["id"]]
    with pytest.raises(InvalidInput, match=r"triggers\[0\]\.posture"):
        module.etl.deploy(name="bad", work_pool_name="local", parameters={"source": "s"},
                          triggers=[{"posture": "Sometimes"}])
    module.etl.deploy(name="after-cleanup", work_pool_name="local", parameters={"source": "s"})
    assert client.request("GET", client.ws("/automations")) == []  # deployed without triggers: removed
