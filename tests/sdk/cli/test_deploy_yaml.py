"""``pushpool deploy`` from pushpool.yaml: the same deployments as the Python path, idempotent."""

from __future__ import annotations

import textwrap

from tests.sdk.cli.conftest import write_project

YAML = textwrap.dedent('''
    deployments:
      - name: same
        entrypoint: flows/greet.py:greet
        tags: [t]
        parameters: {times: 2}
        schedules:
          - cron: "* * * * *"
        work_pool:
          name: demo
      - name: nightly
        entrypoint: flows/greet.py:greet
        description: "Owned by {{ $TEAM }}"
        schedules:
          - cron: "0 2 * * *"
            timezone: Europe/Paris
            parameters: {name: night}
        concurrency_limit: 1
        work_pool:
          name: demo
          job_variables:
            env: {TEAM: "{{ $TEAM }}"}
''')


def by_name(cli, name: str) -> dict:
    return next(d for d in cli.json("deployment", "ls") if d["name"] == name)


def test_yaml_and_python_make_the_same_deployment_and_twice_changes_nothing(server, tmp_path):
    cli = server
    cli.run("work-pool", "create", "demo", "--type", "local:push")
    project = tmp_path / "project"
    script = write_project(project, name="same")
    assert cli.python(script).returncode == 0
    from_python = by_name(cli, "same")
    runs_before = cli.json("flow-run", "ls", "--upcoming", "--deployment", "greet/same", "--limit", "1000")

    (project / "pushpool.yaml").write_text(YAML)
    out = cli.ok("deploy", "--all", cwd=project, TEAM="data")
    assert "Deployed greet/same" in out and "Deployed greet/nightly" in out
    # Same spec through YAML: the stored deployment is untouched (same schedule ids, same 'updated').
    assert by_name(cli, "same") == from_python
    cli.ok("deploy", "--all", cwd=project, TEAM="data")
    assert by_name(cli, "same") == from_python
    nightly = by_name(cli, "nightly")
    cli.ok("deploy", "--all", cwd=project, TEAM="data")
    assert by_name(cli, "nightly") == nightly
    assert [d["name"] for d in cli.json("deployment", "ls")] == ["nightly", "same"]
    runs_after = cli.json("flow-run", "ls", "--upcoming", "--deployment", "greet/same", "--limit", "1000")
    assert {r["id"] for r in runs_after} >= {r["id"] for r in runs_before}

    assert nightly["description"] == "Owned by data"
    assert nightly["job_variables"] == {"env": {"TEAM": "data"}, "working_dir": str(project.resolve())}
    assert nightly["schedules"][0]["timezone"] == "Europe/Paris"
    assert nightly["schedules"][0]["parameters"] == {"name": "night"}
    assert nightly["parameter_schema"] == from_python["parameter_schema"]


def test_deploy_one_by_name_and_init(server, tmp_path):
    cli = server
    cli.run("work-pool", "create", "demo", "--type", "local:push")
    project = tmp_path / "p2"
    write_project(project)
    (project / "pushpool.yaml").write_text(YAML)
    assert "declares 2 deployments" in cli.fails("deploy", cwd=project, TEAM="x")
    out = cli.ok("deploy", "--name", "greet/nightly", cwd=project, TEAM="x")
    assert "greet/nightly" in out and "greet/same" not in out
    starter = tmp_path / "starter"
    starter.mkdir()
    cli.ok("init", cwd=starter)
    assert "deployments:" in (starter / "pushpool.yaml").read_text()
    assert "already exists" in cli.fails("init", cwd=starter)


def test_an_image_mapping_is_built_once_and_recorded_by_digest(server, tmp_path, oci_registries):
    from pushpool.images.registry import Registry
    from tests.fakes.images import push_base_image

    cli = server
    cli.run("work-pool", "create", "demo", "--type", "local:push")
    registry = Registry(oci_registries["open"])
    base = push_base_image(registry, "yaml-base/python")
    project = tmp_path / "p3"
    write_project(project)
    image = f"{{name: {registry.host}/yaml/flows, base_image: '{base}', backend: daemonless}}"
    (project / "pushpool.yaml").write_text(YAML.replace("    work_pool:\n", f"    image: {image}\n    work_pool:\n"))
    applied = cli.json("deploy", "--all", cwd=project, TEAM="x")
    refs = {d["image"] for d in applied}
    assert len(refs) == 1
    repository, digest = refs.pop().split("@")
    assert repository == f"{registry.host}/yaml/flows" and registry.get_manifest("yaml/flows", digest)[2] == digest
    not_built = cli.json("deploy", "--all", "--no-build", cwd=project, TEAM="x")
    assert {d["image"] for d in not_built} == {f"{registry.host}/yaml/flows:latest"}
    bad = "    image: {name: x, backend: podman}\n    work_pool:\n"
    (project / "pushpool.yaml").write_text(YAML.replace("    work_pool:\n", bad))
    assert "deployments[same].image.backend: 'podman' is not one of" in cli.fails("deploy", "--all", cwd=project,
                                                                                  TEAM="x")


def test_triggers_in_the_yaml_make_automations_that_run_the_deployment(server, tmp_path):
    cli = server
    cli.run("work-pool", "create", "demo", "--type", "local:push")
    project = tmp_path / "p4"
    write_project(project)
    triggers = ("    concurrency_limit: 1\n"
                "    triggers:\n"
                "      - name: nightly-after-same\n"
                "        expect: [pushpool.flow-run.Completed]\n"
                "        match_related: {pushpool.resource.name: greet/same}\n"
                "        parameters: {name: \"after {{ flow_run.name }}\"}\n")
    with_triggers = YAML.replace("    concurrency_limit: 1\n", triggers)
    (project / "pushpool.yaml").write_text(with_triggers)
    cli.ok("deploy", "--all", cwd=project, TEAM="x")
    automations = cli.json("automation", "ls")
    nightly = by_name(cli, "nightly")
    assert [(a["name"], a["owner_deployment_id"]) for a in automations] == [("nightly-after-same", nightly["id"])]
    assert automations[0]["actions"][0]["parameters"] == {"name": "after {{ flow_run.name }}"}
    (project / "pushpool.yaml").write_text(with_triggers.replace("pushpool.flow-run.Completed", "not-a-list: x"))
    assert "deployments" in cli.fails("deploy", "--all", cwd=project, TEAM="x")


def test_deploy_all_names_the_deployment_each_error_is_about(server, tmp_path):
    cli = server
    cli.run("work-pool", "create", "demo", "--type", "local:push")
    project = tmp_path / "project"
    write_project(project, name="same")
    (project / "pushpool.yaml").write_text(textwrap.dedent('''
        deployments:
          - name: fine
            entrypoint: flows/greet.py:greet
            work_pool: {name: demo}
          - name: lost
            entrypoint: flows/greet.py:greet
            work_pool: {name: no-such-pool}
    '''))
    error = cli.fails("deploy", "--all", cwd=project)
    assert "greet/lost: " in error and "no-such-pool" in error
