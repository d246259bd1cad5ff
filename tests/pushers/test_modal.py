"""``modal:push`` with the real ``modal`` client against the fake Modal API (tests/fakes/modal_api.py)."""

from __future__ import annotations

import re

import pytest

from pushpool.pushers.base import InfraState, Job, PermanentPusherError, PusherContext, TransientPusherError
from pushpool.pushers.modal import ModalPusher, sandbox_name
from tests.modal_fixtures import OTHER_TOKEN, TOKEN

pytest.importorskip("modal")
from grpclib import Status  # noqa: E402 - installed with modal
from modal_proto import api_pb2  # noqa: E402

Result = api_pb2.GenericResult
IMAGE = "registry.example/flows:1"
RUN_ID = "0190d6a8-5a3c-7000-8000-00000000a001"


def config(token=TOKEN, **values) -> dict:
    defaults = {"modal_credentials": {"token_id": token[0], "token_secret": token[1]}, "app_name": "flows",
                "timeout": 600, "cpu": 0.5, "memory": 1024}
    return {**defaults, **values}


def job(run_id: str = RUN_ID, attempt: int = 1, **values) -> Job:
    return Job(flow_run_id=run_id, workspace_id="ws", pool_name="modal", deployment_name="etl/nightly",
               flow_run_name="brave-fox", configuration=config(**values),
               env={"PUSHPOOL_FLOW_RUN_ID": run_id, "PUSHPOOL_RUN_TOKEN": "run-token"}, image=IMAGE,
               labels={"pushpool.flow-run-id": run_id, "pushpool.work-pool": "modal"}, attempt=attempt)


@pytest.fixture
def pusher(tmp_path, modal_api) -> ModalPusher:
    return ModalPusher(PusherContext(state_dir=tmp_path, api_url="http://127.0.0.1:1", pool_config=config()))


def test_submit_creates_one_sandbox_with_the_runner_the_environment_and_the_resources(pusher, modal_api):
    submission = pusher.submit(job())
    sandbox = modal_api.sandbox(submission.infra_id)
    assert submission.console_url == f"https://modal.com/id/{submission.infra_id}"
    assert sandbox.command == ["pushpool-runner"]
    assert sandbox.env == {"PUSHPOOL_FLOW_RUN_ID": RUN_ID, "PUSHPOOL_RUN_TOKEN": "run-token"}
    assert sandbox.name == sandbox_name(RUN_ID) and sandbox.tags["pushpool.flow-run-id"] == RUN_ID
    assert sandbox.token_id == TOKEN[0]
    resources = sandbox.definition.resources
    assert (resources.milli_cpu, resources.memory_mb, sandbox.definition.timeout_secs) == (500, 1024, 600)
    assert f"FROM {IMAGE}" in modal_api.state.images[sandbox.definition.image_id]
    assert modal_api.state.apps == {("main", "flows"): sandbox.app_id}


def test_a_gpu_sandbox_gets_its_gpu_and_environment_too(pusher, modal_api):
    sandbox = modal_api.sandbox(pusher.submit(job(gpu="A10G:2")).infra_id)
    assert "SandboxCreate" in modal_api.state.calls  # Modal's GPU sandboxes use the other backend
    gpu = sandbox.definition.resources.gpu_config
    assert (gpu.gpu_type, gpu.count) == ("A10G", 2)
    assert sandbox.env["PUSHPOOL_RUN_TOKEN"] == "run-token"


def test_a_resubmission_finds_the_run_sandbox_instead_of_creating_another(pusher, modal_api):
    first = pusher.submit(job())
    assert pusher.submit(job(attempt=2)).infra_id == first.infra_id  # found by its tag ...
    assert modal_api.state.calls.count("SandboxCreateV2") == 1  # ... before any create
    assert pusher.submit(job(attempt=1)).infra_id == first.infra_id  # the name is taken: adopted
    assert modal_api.state.calls.count("SandboxCreateV2") == 2
    assert len(modal_api.sandboxes_of_run(RUN_ID)) == 1


def test_status_explains_how_a_sandbox_ended(pusher, modal_api):
    ids = [pusher.submit(job(run_id=f"0190d6a8-5a3c-7000-8000-00000000b00{i}")).infra_id for i in range(6)]
    modal_api.finish(ids[1], 0)
    modal_api.finish(ids[2], 3, message="ValueError: bad rows")
    modal_api.finish(ids[3], 0, status=Result.GENERIC_STATUS_INIT_FAILURE,
                     message=f"Image pull failed for {IMAGE}: unauthorized")
    modal_api.finish(ids[4], 0, status=Result.GENERIC_STATUS_TIMEOUT)
    modal_api.finish(ids[5], 0, status=Result.GENERIC_STATUS_KERNEL_OOM_KILL)
    statuses = pusher.status([*ids, "sb-v2-999999"])
    assert statuses[ids[0]].state is InfraState.RUNNING
    assert statuses[ids[1]].state is InfraState.EXITED and statuses[ids[1]].exit_code == 0
    assert statuses[ids[2]].exit_code == 3 and "ValueError: bad rows" in statuses[ids[2]].reason
    assert statuses[ids[3]].exit_code != 0 and f"Image pull failed for {IMAGE}" in statuses[ids[3]].reason
    assert statuses[ids[4]].exit_code == 124 and "timeout" in statuses[ids[4]].reason
    assert "out of memory" in statuses[ids[5]].reason
    assert statuses["sb-v2-999999"].state is InfraState.MISSING


def test_cancel_terminates_the_sandbox(pusher, modal_api):
    infra_id = pusher.submit(job()).infra_id
    pusher.cancel(infra_id)
    assert modal_api.sandbox(infra_id).result.status == Result.GENERIC_STATUS_TERMINATED
    assert "terminated" in pusher.status([infra_id])[infra_id].reason
    pusher.cancel("sb-v2-999999")  # already gone: nothing to do


def test_each_token_is_used_for_its_own_pool(tmp_path, modal_api):
    one = ModalPusher(PusherContext(state_dir=tmp_path, api_url="http://x", pool_config=config()))
    two = ModalPusher(PusherContext(state_dir=tmp_path, api_url="http://x", pool_config=config(OTHER_TOKEN)))
    a = one.submit(job(run_id="0190d6a8-5a3c-7000-8000-00000000c001"))
    b = two.submit(job(run_id="0190d6a8-5a3c-7000-8000-00000000c002", token=OTHER_TOKEN))
    assert modal_api.sandbox(a.infra_id).token_id == TOKEN[0]
    assert modal_api.sandbox(b.infra_id).token_id == OTHER_TOKEN[0]


def test_a_private_image_uses_the_registry_secret_and_a_missing_one_is_named(pusher, modal_api):
    modal_api.add_named_secret("ghcr", {"REGISTRY_USERNAME": "me", "REGISTRY_PASSWORD": "pw"})
    pusher.submit(job(registry_secret="ghcr"))
    with pytest.raises(PermanentPusherError, match="NotFoundError.*nope"):
        pusher.submit(job(run_id="0190d6a8-5a3c-7000-8000-00000000d001", registry_secret="nope"))


def test_errors_are_clear_and_name_the_client_version(pusher, modal_api):
    import modal

    with pytest.raises(PermanentPusherError, match="modal_credentials"):
        pusher.submit(job(modal_credentials=None))
    with pytest.raises(PermanentPusherError, match=rf"modal client {re.escape(modal.__version__)}.*token was refused"):
        pusher.submit(job(modal_credentials={"token_id": "ak-wrong", "token_secret": "nope"}))
    modal_api.fail_next("SandboxCreateV2", Status.RESOURCE_EXHAUSTED, "too many sandboxes", count=10)
    with pytest.raises(TransientPusherError, match="too many sandboxes"):
        pusher.submit(job(run_id="0190d6a8-5a3c-7000-8000-00000000e001"))
    with pytest.raises(PermanentPusherError, match="no image"):
        pusher.submit(Job(**{**job().__dict__, "image": None}))


def test_an_image_built_by_modal_is_waited_for_and_a_failed_build_names_the_image(pusher, modal_api):
    modal_api.state.streamed_images.add(IMAGE)
    assert pusher.submit(job()).infra_id
    assert "ImageJoinStreaming" in modal_api.state.calls
    modal_api.state.image_failures["registry.example/private:2"] = "pull access denied"
    with pytest.raises(PermanentPusherError, match="image 'registry.example/private:2'.*pull access denied"):
        pusher.submit(Job(**{**job(run_id="0190d6a8-5a3c-7000-8000-00000000f001").__dict__,
                             "image": "registry.example/private:2"}))


@pytest.mark.parametrize("code, expected", [(0, None), (124, "timeout"), (137, "terminated"), (2, "exit code 2")])
def test_a_return_code_alone_is_classified_too(code, expected):
    from pushpool.pushers.modal import classify

    status = classify(None, code)
    assert status.state is InfraState.EXITED and status.exit_code == code
    assert (status.reason is None) if expected is None else (expected in status.reason)
