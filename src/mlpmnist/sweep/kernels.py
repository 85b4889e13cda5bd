"""The kernels a job runs its notebook in: this very interpreter and this mlpmnist, their output
to the job's log, and killed with the process that started them."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
from pathlib import Path
from typing import Any

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the kernel's process: SIGKILL it when the thread that started it dies, so a killed
    sweep leaves no kernel behind."""
    with contextlib.suppress(OSError, AttributeError):  # prctl is Linux's
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def kernel_env() -> dict[str, str]:
    """This process's environment with the folder this mlpmnist is imported from first on
    ``PYTHONPATH``, so the kernel runs the sweep's very code (not another installed mlpmnist)."""
    here = str(Path(__file__).resolve().parents[2])  # src/ (this file is src/mlpmnist/sweep/kernels.py)
    rest = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != here]
    return {**os.environ, "PYTHONPATH": os.pathsep.join([here, *rest])}


def kernel_manager(log_file: Any, started: list) -> type:
    """A kernel manager class whose kernels run ipykernel in this interpreter and this mlpmnist
    (``kernel_env``), whatever a user's ``python3`` kernelspec names, write their output to
    ``log_file``, die with their parent, and are listed in ``started`` (for the watchdog)."""
    from jupyter_client.kernelspec import KernelSpec
    from jupyter_client.manager import AsyncKernelManager

    class JobKernelManager(AsyncKernelManager):
        @property
        def kernel_spec(self) -> Any:  # not the kernelspec installed under the kernel's name
            if self._kernel_spec is None:
                self._kernel_spec = KernelSpec(
                    argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                    display_name=f"mlpmnist job ({sys.executable})",
                    language="python",
                    resource_dir=str(Path(sys.executable).parent),
                    metadata={"debugger": False},
                )
            return self._kernel_spec

        async def start_kernel(self, **kw: Any) -> None:  # type: ignore[override]
            kw.setdefault("stdout", log_file)
            kw.setdefault("stderr", log_file)
            kw.setdefault("preexec_fn", _die_with_parent)
            # ipykernel's own log at ERROR: its start-up warning that a local kernel talks over TCP
            # without encryption would open every experiment's log otherwise.
            kw["extra_arguments"] = [*(kw.get("extra_arguments") or []), "--IPKernelApp.log_level=ERROR"]
            kw.setdefault("env", kernel_env())
            await super().start_kernel(**kw)
            started.append(self)

        async def _async_interrupt_kernel(self) -> None:
            # jupyter_client's shutdown sends SIGINT before its shutdown request; a kernel that
            # gets it inside a message handler logs "KeyboardInterrupt caught in kernel" in a
            # run that went well. The shutdown request alone stops an idle kernel.
            if self.shutting_down:
                return
            await super()._async_interrupt_kernel()

    return JobKernelManager


def kill(managers: list) -> None:
    """SIGKILL the kernels of ``managers`` that still run."""
    for km in managers:
        pid = getattr(km.provisioner, "pid", None)
        if pid:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
