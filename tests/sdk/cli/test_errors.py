"""Bad input: each a clear one-line error and exit code 1, and nothing half-written."""

from __future__ import annotations

import time

import pytest

from tests.sdk.cli.conftest import Cli, write_project


@pytest.fixture(scope="module")
def ready(server, tmp_path_factory):
    project = tmp_path_factory.mktemp("errors-project")
    server.run("work-pool", "create", "demo", "--type", "local:push")
    assert server.python(write_project(project)).returncode == 0
    return server, project


def test_wrong_cron(ready):
    cli, _ = ready
    line = cli.fails("deployment", "schedule", "create", "greet/dep", "--cron", "61 * * * *")
    assert "cron: '61 * * * *' is not a valid cron expression" in line
    assert len(cli.json("deployment", "schedule", "ls", "greet/dep")) == 1


def test_unknown_pool(ready, tmp_path):
    cli, _ = ready
    assert "Work pool 'nope' not found" in cli.fails("work-queue", "ls", "--pool", "nope")
    project = tmp_path / "other"
    script = write_project(project, name="elsewhere", pool="nope")
    result = cli.python(script)
    assert result.returncode != 0 and "work pool 'nope' does not exist" in result.stderr
    assert "greet/elsewhere" not in cli.ok("deployment", "ls")


def test_parameter_of_the_wrong_type(ready):
    cli, _ = ready
    assert "parameters.times: 'lots' is not of type 'integer'" in cli.fails(
        "deployment", "run", "greet/dep", "--param", "times=lots")


def test_unknown_job_variable(ready):
    cli, _ = ready
    assert "job_variables.cpu: unknown job variable" in cli.fails(
        "deployment", "run", "greet/dep", "--job-variable", "cpu=2")


def test_bad_durations_and_names(ready):
    cli, _ = ready
    assert "is not a duration" in cli.fails("deployment", "run", "greet/dep", "--start-in", "soonish")
    assert "{customer} is not a parameter" in cli.fails("deployment", "run", "greet/dep",
                                                         "--flow-run-name", "c-{customer}")
    assert "not of the form 'flow-name/deployment-name'" in cli.fails("deployment", "run", "greet")


def test_missing_api_url(tmp_path):
    cli = Cli(home=tmp_path / "empty-home", cwd=tmp_path)
    assert "No API URL configured" in cli.fails("flow-run", "ls")


def test_expired_key(ready):
    cli, _ = ready
    issued = cli.json("api-key", "create", "--name", "brief", "--expires-in", "1 second")
    time.sleep(1.2)
    line = cli.fails("flow-run", "ls", PUSHPOOL_API_KEY=issued["key"])
    assert "expired" in line and "pushpool login" in line


def test_yaml_with_a_typo(ready):
    cli, project = ready
    (project / "pushpool.yaml").write_text(
        "deployments:\n  - name: typo\n    entrypoint: flows/greet.py:greet\n    schedles:\n      - cron: '* * * * *'\n"
        "    work_pool: {name: demo}\n")
    line = cli.fails("deploy", "--all", cwd=project)
    assert "deployments[0].schedles: unknown key (did you mean 'schedules'?)" in line
    assert "greet/typo" not in cli.ok("deployment", "ls")


def test_yaml_with_a_missing_environment_variable(ready):
    cli, project = ready
    (project / "pushpool.yaml").write_text(
        "deployments:\n  - name: envy\n    entrypoint: flows/greet.py:greet\n"
        "    work_pool: {name: demo, job_variables: {env: {TOKEN: '{{ $NOT_SET_ANYWHERE }}'}}}\n")
    assert "environment variable NOT_SET_ANYWHERE is not set" in cli.fails("deploy", "--all", cwd=project)


def test_unknown_pool_type_and_missing_provisioner(ready):
    cli, _ = ready
    assert "unknown work pool type 'k8s:push'" in cli.fails("work-pool", "create", "x", "--type", "k8s:push")
    out = cli.ok("work-pool", "create", "local2", "--type", "local:push", "--provision-infra")
    assert "no infrastructure to provision" in out


def test_a_broken_setting_names_its_environment_variable(tmp_path):
    cli = Cli(home=tmp_path / "home", cwd=tmp_path)
    line = cli.fails("server", "start", "--port", "1", PUSHPOOL_TICK_TOKEN="short")
    assert line.startswith("Error: PUSHPOOL_TICK_TOKEN: ") and "at least 32 characters" in line
    line = cli.fails("server", "migrate", PUSHPOOL_DATABASE_POOL_SIZE="1")
    assert line.startswith("Error: PUSHPOOL_DATABASE_POOL_SIZE: ")


def test_a_server_image_with_an_unknown_extra(tmp_path):
    cli = Cli(home=tmp_path / "home", cwd=tmp_path)
    line = cli.fails("server", "image", "127.0.0.1:1/pushpool/server", "--extra", "kubernetes")
    assert "--extra: 'kubernetes' is not one of aws, azure, coiled, gcp, modal" in line
