"""The ``nbedge`` command as an installer runs it: a process of its own, awaited without
blocking the test's event loop (where a central API or a gateway may be serving)."""

from __future__ import annotations

import asyncio
import subprocess
import sys

NBEDGE = [sys.executable, "-m", "edge.cli"]


async def nbedge(*args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``nbedge ARGS``; its exit status, standard output and standard error."""
    process = await asyncio.create_subprocess_exec(
        *NBEDGE, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout_s)
    assert process.returncode is not None
    return subprocess.CompletedProcess(
        [*NBEDGE, *args], process.returncode, out.decode(), err.decode()
    )
