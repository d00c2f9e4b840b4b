from __future__ import annotations

import hashlib
import os
import threading
from typing import Any, Literal

from ..errors import ToolError
from ..fingerprint import CacheBasis, file_basis
from ..registry import (
    ProgressCallback,
    Tool,
    ToolArgs,
    ToolContext,
    offload,
    offload_long,
    register,
)
from ..workspace import Workspace, WorkspacePath

CHUNK_BYTES = 1024 * 1024
PROGRESS_EVERY_BYTES = 64 * CHUNK_BYTES


class HashFileArgs(ToolArgs):
    path: WorkspacePath
    algorithm: Literal["sha256", "sha1", "md5", "sha512", "blake2b"] = "sha256"


def _hash_blocking(
    workspace: Workspace, path: str, digest: Any, stop: threading.Event, report: ProgressCallback
) -> tuple[str, int]:
    """Stream the file through ``digest`` one chunk at a time (hashlib releases the GIL)."""
    size = 0
    with open(workspace.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as handle:
        total = os.fstat(handle.fileno()).st_size
        while chunk := handle.read(CHUNK_BYTES):
            if stop.is_set():
                raise ToolError("cancelled", "hashing was stopped")
            digest.update(chunk)
            size += len(chunk)
            if size % PROGRESS_EVERY_BYTES == 0:
                report(size, total, "hashing")
    return digest.hexdigest(), size


async def hash_stream(path: str, digest: Any, ctx: ToolContext) -> tuple[str, int]:
    """The hex digest and size of the workspace's file ``path``, streamed in a thread; the
    thread stops at the next chunk when the task is cancelled or times out."""
    stop = threading.Event()
    try:
        return await offload_long(
            _hash_blocking, ctx.workspace, path, digest, stop, ctx.progress_from_thread()
        )
    except FileNotFoundError:
        raise ToolError("not_found", f"{path!r} does not exist") from None
    except IsADirectoryError:
        raise ToolError("is_a_directory", f"{path!r} is a folder") from None
    except PermissionError:
        raise ToolError("permission_denied", f"{path!r} cannot be read") from None
    finally:
        stop.set()


@register
class HashFile(Tool):
    name = "hash_file"
    description = "Hash a file of the workspace (sha256, sha1, md5, sha512 or blake2b), streamed."
    Args = HashFileArgs
    read_only = True
    cacheable = True

    def cache_basis(self, args: HashFileArgs, workspace: Workspace) -> CacheBasis | None:
        path = workspace.resolve(args.path)
        return file_basis(workspace, path, {**args.model_dump(), "path": str(path)})

    async def run(self, args: HashFileArgs, ctx: ToolContext) -> dict[str, Any]:
        path = await offload(ctx.workspace.resolve, args.path)  # names it; never opened by name
        hexdigest, size = await hash_stream(args.path, hashlib.new(args.algorithm), ctx)
        return {
            "path": ctx.workspace.relative(path),
            "algorithm": args.algorithm,
            "hexdigest": hexdigest,
            "size": size,
        }
