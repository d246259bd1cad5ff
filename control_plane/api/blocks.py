"""Blocks: typed credential and secret documents, encrypted at rest, masked on the way out."""

from __future__ import annotations

from fastapi import APIRouter, Depends, status

from pushpool.control_plane.api.deps import Access, workspace_access
from pushpool.control_plane.api.schemas import BlockCreate, BlockOut, BlockUpdate
from pushpool.control_plane.errors import NotFound
from pushpool.control_plane.models import Block
from pushpool.control_plane.services.block_types import BLOCK_TYPES, mask_block_data, validate_block_data
from pushpool.control_plane.services.context import ServiceContext
from pushpool.control_plane.services.keys import Permission

router = APIRouter(prefix="/api/workspaces/{workspace}", tags=["blocks"])


def block_out(ctx: ServiceContext, block: Block) -> BlockOut:
    data = mask_block_data(block.type, ctx.cipher.decrypt(block.ciphertext))
    return BlockOut(id=block.id, name=block.name, type=block.type, data=data, created=block.created,
                    updated=block.updated)


def load_block(ctx: ServiceContext, access: Access, name: str) -> Block:
    block = ctx.store.get_block(access.workspace_id, name)
    if block is None:
        raise NotFound(f"Block {name!r} not found")
    return block


@router.get("/block_types")
def list_block_types(access: Access = Depends(workspace_access)) -> dict[str, list[dict]]:
    access.require(Permission.READ)
    return {name: [vars(f) for f in fields] for name, fields in BLOCK_TYPES.items()}


@router.post("/blocks", response_model=BlockOut, status_code=status.HTTP_201_CREATED)
def create_block(body: BlockCreate, access: Access = Depends(workspace_access)):
    ctx = access.ctx
    access.require(Permission.WRITE)
    validate_block_data(body.type, body.data)
    now = ctx.clock.now()
    block = Block(workspace_id=access.workspace_id, name=body.name, type=body.type,
                  ciphertext=ctx.cipher.encrypt(body.data), created=now, updated=now)
    return block_out(ctx, ctx.store.create_block(block))


@router.get("/blocks", response_model=list[BlockOut])
def list_blocks(access: Access = Depends(workspace_access)):
    ctx = access.ctx
    access.require(Permission.READ)
    return [block_out(ctx, b) for b in ctx.store.list_blocks(access.workspace_id)]


@router.get("/blocks/{name}", response_model=BlockOut)
def read_block(name: str, access: Access = Depends(workspace_access)):
    ctx = access.ctx
    access.require(Permission.READ)
    return block_out(ctx, load_block(ctx, access, name))


@router.put("/blocks/{name}", response_model=BlockOut)
def update_block(name: str, body: BlockUpdate, access: Access = Depends(workspace_access)):
    ctx = access.ctx
    access.require(Permission.WRITE)
    block = load_block(ctx, access, name)
    validate_block_data(block.type, body.data)
    updated = block.model_copy(update={"ciphertext": ctx.cipher.encrypt(body.data), "updated": ctx.clock.now()})
    ctx.store.update_block(updated)
    return block_out(ctx, updated)


@router.delete("/blocks/{name}", status_code=status.HTTP_204_NO_CONTENT)
def delete_block(name: str, access: Access = Depends(workspace_access)) -> None:
    ctx = access.ctx
    access.require(Permission.WRITE)
    ctx.store.delete_block(access.workspace_id, load_block(ctx, access, name).id)
