"""Workspace variables: named JSON values that flows read and set.

Members read them; developers and owners set and delete them. A run's token may read one
variable by name and set one (its flow's code is the workspace's own), never list or delete them.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path, status

from pushpool.control_plane.api.deps import Access, workspace_access
from pushpool.control_plane.api.schemas import NAME_PATTERN, VariableSet
from pushpool.control_plane.errors import AlreadyExists, Forbidden, NotFound, TooLarge
from pushpool.control_plane.models import Variable
from pushpool.control_plane.services.keys import Permission

router = APIRouter(prefix="/api/workspaces/{workspace}", tags=["variables"])

VariableName = Path(min_length=1, max_length=100, pattern=NAME_PATTERN, description="Variable name")


@router.get("/variables", response_model=list[Variable])
def list_variables(access: Access = Depends(workspace_access)):
    access.require(Permission.READ)
    return access.ctx.store.list_variables(access.workspace_id)


@router.get("/variables/{name}", response_model=Variable)
def read_variable(name: str = VariableName, access: Access = Depends(workspace_access)):
    access.require_unless_run_token(Permission.READ)  # a run token: one variable by name
    variable = access.ctx.store.get_variable(access.workspace_id, name)
    if variable is None:
        raise NotFound(f"Variable {name!r} not found")
    return variable


@router.put("/variables/{name}", response_model=Variable)
def set_variable(body: VariableSet, name: str = VariableName, access: Access = Depends(workspace_access)):
    """Create or replace a variable (``overwrite: false`` refuses to replace one)."""
    access.require_unless_run_token(Permission.WRITE)
    ctx = access.ctx
    existing = ctx.store.get_variable(access.workspace_id, name)
    if existing is not None and not body.overwrite:
        raise AlreadyExists(f"Variable {name!r} already exists (set overwrite to replace it)")
    limit = ctx.settings.max_variables_per_workspace
    if existing is None and ctx.store.count_variables(access.workspace_id) >= limit:
        raise TooLarge(f"workspace {access.workspace.name!r} has {limit} variables, the most it may "
                       "(PUSHPOOL_MAX_VARIABLES_PER_WORKSPACE); delete one first")
    now = ctx.clock.now()
    variable = Variable(workspace_id=access.workspace_id, name=name, value=body.value, tags=body.tags,
                        created=existing.created if existing else now, updated=now)
    ctx.store.put_variable(variable)
    return variable


@router.delete("/variables/{name}", status_code=status.HTTP_204_NO_CONTENT)
def delete_variable(name: str = VariableName, access: Access = Depends(workspace_access)) -> None:
    if access.caller.is_run_token:
        raise Forbidden("A run token can read and set variables, not delete them")
    access.require(Permission.WRITE)
    if not access.ctx.store.delete_variable(access.workspace_id, name):
        raise NotFound(f"Variable {name!r} not found")
