"""Moving a workspace from SQLite to PostgreSQL (``pushpool server export|import``): the same pools, schedules,
blocks (still encrypted), keys and runs on the other side."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from fastapi.testclient import TestClient

from pushpool.control_plane.app import build_context, create_app
from pushpool.control_plane.errors import InvalidInput
from pushpool.control_plane.models import FlowRunFilter
from pushpool.control_plane.services.crypto import BlockCipher
from pushpool.control_plane.services.transfer import export_workspace, import_records, read_export

pytest.importorskip("psycopg")
from pushpool.control_plane.storage.postgres import PostgresStore  # noqa: E402


@pytest.fixture
def team(api):
    """An embedded store a team has worked in: a pool with a second queue, a scheduled deployment, a block, a
    variable, a service account and its key, runs in several states."""
    api.pool("etl", concurrency_limit=5)
    api.ok("POST", api.ws("/work_pools/etl/queues"), json={"name": "urgent", "priority": 1})
    dep = api.deployment("nightly", pool="etl", schedules=[{"cron": "0 3 * * *"}])
    api.ok("POST", api.ws("/blocks"), json={"name": "db", "type": "secret", "data": {"value": "hunter2"}})
    api.ok("PUT", api.ws("/variables/region"), json={"value": "eu"})
    bot = api.ok("POST", api.ws("/service_accounts"), json={"name": "bot"})
    runs = [api.run(dep["id"]) for _ in range(3)]
    api.ok("POST", api.ws(f"/flow_runs/{runs[0]['id']}/cancel"))
    return {"dep": dep, "bot_key": bot["key"], "runs": runs}


def exported(ctx) -> list[str]:
    return [json.dumps(line) for line in export_workspace(ctx.store, ctx.cipher, "default")]


def test_a_workspace_moves_from_sqlite_to_postgresql_whole(api, ctx, settings, team, postgres_url):
    header, records = read_export(exported(ctx))
    target = PostgresStore(postgres_url)
    try:
        report = import_records(target, ctx.cipher, header, records)
        assert report["imported"]["flow_run"] == len(ctx.store.list_flow_runs(
            ctx.store.get_workspace("default").id, FlowRunFilter(), limit=1000))
        workspace = target.get_workspace("default")
        assert [p.name for p in target.list_work_pools(workspace.id)] == ["etl"]
        pool = target.get_work_pool(workspace.id, "etl")
        assert {q.name for q in target.list_work_queues(workspace.id, pool.id)} == {"default", "urgent"}
        deployment = target.get_deployment(workspace.id, team["dep"]["id"])
        assert [s.cron for s in deployment.schedules] == ["0 3 * * *"]
        block = target.get_block(workspace.id, "db")
        assert block.ciphertext == ctx.store.get_block(workspace.id, "db").ciphertext  # still encrypted, as it was
        assert ctx.cipher.decrypt(block.ciphertext) == {"value": "hunter2"}
        moved = {r.id: r.state.type for r in target.list_flow_runs(workspace.id, FlowRunFilter(), limit=1000)}
        before = {r.id: r.state.type for r in ctx.store.list_flow_runs(workspace.id, FlowRunFilter(), limit=1000)}
        assert moved == before and len(moved) >= 3
        # the keys people hold work against the new store: the owner's and the service account's
        app = TestClient(create_app(settings, target, ctx=build_context(settings, target)))
        for key in (api.key, team["bot_key"]):
            answer = app.get(api.ws("/work_pools/etl"), headers={"Authorization": f"Bearer {key}"})
            assert answer.status_code == 200, answer.text
        assert app.get(api.ws("/variables/region"), headers={"Authorization": f"Bearer {api.key}"}).json()[
            "value"] == "eu"

        again = import_records(target, ctx.cipher, header, records)  # idempotent: nothing written twice
        assert sum(again["imported"].values()) == 0 and sum(again["skipped"].values()) == len(records)
    finally:
        target.close()


def test_and_back_out_to_dynamodb(ctx, team, postgres_url, aws):
    """PostgreSQL → DynamoDB (the serverless stack, here with the same Fernet key): the same runs and blocks."""
    import uuid

    from pushpool.control_plane.storage.dynamodb import DynamoDbStore
    from tests.fakes.aws import REGION

    middle = PostgresStore(postgres_url)
    table = DynamoDbStore(f"pushpool-{uuid.uuid4().hex[:8]}", region=REGION, endpoint_url=aws.url, create_table=True)
    try:
        import_records(middle, ctx.cipher, *read_export(exported(ctx)))
        header, records = read_export(json.dumps(line) for line in export_workspace(middle, ctx.cipher, "default"))
        report = import_records(table, ctx.cipher, header, records)
        assert sum(report["skipped"].values()) <= 1  # the default queue, made with its pool
        workspace = table.get_workspace("default")
        runs = {r.id: r.state.type for r in table.list_flow_runs(workspace.id, FlowRunFilter(), limit=1000)}
        assert runs == {r.id: r.state.type for r in middle.list_flow_runs(workspace.id, FlowRunFilter(), limit=1000)}
        assert ctx.cipher.decrypt(table.get_block(workspace.id, "db").ciphertext) == {"value": "hunter2"}
        assert table.get_deployment(workspace.id, team["dep"]["id"]).schedules[0].cron == "0 3 * * *"
    finally:
        middle.close()
        table.close()


def test_an_import_with_another_key_writes_nothing(ctx, team, postgres_url):
    from cryptography.fernet import Fernet

    header, records = read_export(exported(ctx))
    target = PostgresStore(postgres_url)
    try:
        with pytest.raises(InvalidInput, match="PUSHPOOL_ENCRYPTION_KEY"):
            import_records(target, BlockCipher(Fernet.generate_key().decode()), header, records)
        assert target.list_workspaces() == []
    finally:
        target.close()


@pytest.mark.parametrize(("content", "message"), [
    ("", "empty"), ("not json\n", "line 1: not JSON"), ('{"format": "other"}\n', "not a pushpool-export"),
    ('{"format": "pushpool-export", "version": 1}\n{"kind": "rocket", "record": {}}\n', "unknown record kind"),
    ('{"format": "pushpool-export", "version": 1}\n{"kind": "work_pool", "record": {"name": 3}}\n',
     "line 2: work_pool record is not valid"),
])
def test_a_malformed_export_is_refused_naming_the_line(content, message):
    with pytest.raises(InvalidInput, match=message):
        read_export(content.splitlines())


def test_the_cli_moves_a_workspace(ctx, settings, team, postgres_url, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUSHPOOL_")}
    env.update({"PUSHPOOL_HOME": str(settings.home), "PUSHPOOL_ENCRYPTION_KEY": settings.encryption_key})
    out = tmp_path / "default.jsonl"
    pushpool = [sys.executable, "-m", "pushpool.cli.main", "server"]
    made = subprocess.run([*pushpool, "export", "--store", f"sqlite://{ctx.store.path}", "-f", str(out)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    assert "Exported" in made.stderr and out.read_text().count("\n") > 10
    moved = subprocess.run([*pushpool, "import", str(out), "--store", postgres_url, "-o", "json"], env=env,
                           capture_output=True, text=True, timeout=120)
    assert moved.returncode == 0, moved.stderr
    assert json.loads(moved.stdout)["imported"]["deployment"] == 1
    missing = subprocess.run([*pushpool, "import", str(tmp_path / "nope.jsonl"), "--store", postgres_url], env=env,
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode != 0 and "nope.jsonl" in missing.stdout + missing.stderr


def test_from_a_kms_keyed_dynamodb_stack_to_postgresql_with_another_key(api, ctx, team, postgres_url, aws):
    """A serverless stack encrypts blocks with KMS; PostgreSQL replicas with a Fernet key of their own. With a
    transfer key the blocks travel encrypted with it and arrive encrypted with the target's key."""
    import uuid

    from cryptography.fernet import Fernet

    from pushpool.control_plane.services.kms_crypto import KmsBlockCipher
    from pushpool.control_plane.storage.dynamodb import DynamoDbStore
    from tests.fakes.aws import REGION

    stack = DynamoDbStore(f"pushpool-{uuid.uuid4().hex[:8]}", region=REGION, endpoint_url=aws.url, create_table=True)
    kms = KmsBlockCipher(aws.client("kms").create_key(Description="stack")["KeyMetadata"]["Arn"], stack,
                         client=aws.client("kms"))

    class CountingCipher(BlockCipher):
        encrypted = 0

        def encrypt(self, value):
            self.encrypted += 1
            return super().encrypt(value)

    target = PostgresStore(postgres_url)
    replicas = CountingCipher(Fernet.generate_key().decode())
    transfer = BlockCipher(Fernet.generate_key().decode())
    try:
        # the stack as a team left it: the same workspace, its block encrypted with KMS
        import_records(stack, ctx.cipher, *read_export(exported(ctx)))
        workspace = stack.get_workspace("default")
        block = stack.get_block(workspace.id, "db")
        stack.update_block(block.model_copy(update={"ciphertext": kms.encrypt({"value": "hunter2"})}))

        with pytest.raises(InvalidInput, match="transfer-key-file"):  # without a transfer key: refused, as before
            import_records(target, replicas, *read_export(
                json.dumps(line) for line in export_workspace(stack, kms, "default")))
        lines = [json.dumps(line) for line in export_workspace(stack, kms, "default", transfer)]
        assert "hunter2" not in "".join(lines) and "kms1:" not in "".join(lines)
        header, records = read_export(lines)
        with pytest.raises(InvalidInput, match="transfer key"):
            import_records(target, replicas, header, records)  # the transfer key is needed ...
        with pytest.raises(InvalidInput, match="not another one"):
            import_records(target, replicas, header, records, BlockCipher(Fernet.generate_key().decode()))
        assert target.list_workspaces() == []  # ... and nothing was written without it

        report = import_records(target, replicas, header, records, transfer)
        assert report["imported"]["block"] == 1
        moved = target.get_block(workspace.id, "db").ciphertext
        assert replicas.decrypt(moved) == {"value": "hunter2"} and not moved.startswith("kms1:")
        assert target.get_deployment(workspace.id, team["dep"]["id"]).schedules[0].cron == "0 3 * * *"
        assert replicas.encrypted == 1
        again = import_records(target, replicas, header, records, transfer)  # a re-run skips what is there ...
        assert again["skipped"]["block"] == 1 and not again["imported"]
        assert replicas.encrypted == 1  # ... without encrypting it again (on KMS, a billed call per block)
    finally:
        stack.close()
        target.close()


def test_the_cli_makes_and_reads_a_transfer_key(ctx, settings, team, postgres_url, tmp_path):
    from cryptography.fernet import Fernet

    env = {k: v for k, v in os.environ.items() if not k.startswith("PUSHPOOL_")}
    env.update({"PUSHPOOL_HOME": str(settings.home), "PUSHPOOL_ENCRYPTION_KEY": settings.encryption_key})
    out, key_file = tmp_path / "default.jsonl", tmp_path / "transfer.key"
    pushpool = [sys.executable, "-m", "pushpool.cli.main", "server"]
    made = subprocess.run([*pushpool, "export", "--store", f"sqlite://{ctx.store.path}", "-f", str(out),
                           "--transfer-key-file", str(key_file)], env=env, capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    assert "new transfer key" in made.stderr and oct(key_file.stat().st_mode & 0o777) == "0o600"
    other = {**env, "PUSHPOOL_ENCRYPTION_KEY": Fernet.generate_key().decode()}  # replicas with a key of their own
    moved = subprocess.run([*pushpool, "import", str(out), "--store", postgres_url, "--transfer-key-file",
                            str(key_file), "-o", "json"], env=other, capture_output=True, text=True, timeout=120)
    assert moved.returncode == 0, moved.stderr
    assert json.loads(moved.stdout)["imported"]["block"] == 1
    key_file.write_text("not a key\n")
    bad = subprocess.run([*pushpool, "import", str(out), "--store", postgres_url, "--transfer-key-file",
                          str(key_file)], env=other, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "does not hold a Fernet key" in bad.stderr
