"""nbgrader's Execute preprocessor, hardened for untrusted submissions.

Used in place of ``nbgrader.preprocessors.Execute`` in the autograde pipeline (see
:mod:`autograder.course`). What it adds:

* kernels start in the sandbox (:class:`autograder.sandbox.SandboxedKernelManager`);
* a kernel that dies (``os._exit``, a resource limit, a crash) or that stays stuck
  after a timed-out cell is interrupted costs only the cells not run yet: they get
  an error output (so they score zero) and grading of the submission goes on;
* the output kept per cell is capped in bytes as it arrives, so a 100 MB print never
  reaches the notebook (nbgrader's LimitOutput only counts lines, afterwards).

:class:`StderrIsNotFailure` then stops nbgrader from zeroing a passing test cell
just because correct code printed a warning on stderr.
"""

from __future__ import annotations

import asyncio
from queue import Empty

from jupyter_client.utils import ensure_async
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat.v4 import new_output
from nbgrader.preprocessors import Execute, NbGraderPreprocessor
from nbgrader.utils import is_grade, is_solution
from traitlets import Integer

from autograder.sandbox import SandboxedKernelManager

# Run silently before every test cell: re-executes numpy.testing's source, undoing any
# replacement of its assertion helpers by the submission (see README, "red team").
RESTORE_ASSERTIONS = """
import importlib as _importlib, sys as _sys
for _name in ("numpy.testing._private.utils", "numpy.testing"):
    if _name in _sys.modules:
        _importlib.reload(_sys.modules[_name])
"""


def error_output(ename: str, evalue: str):
    return new_output("error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"])


class GuardedExecute(Execute):
    iopub_timeout = Integer(60, help="seconds to wait for a finished cell's last output (a huge print takes a while)"
                            ).tag(config=True)
    max_output_bytes = Integer(100_000, help="output kept per cell; the rest is dropped").tag(config=True)
    interrupt_grace = Integer(10, help="seconds a timed-out kernel has to honour the interrupt").tag(config=True)

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("kernel_manager_class", SandboxedKernelManager)
        super().__init__(*args, **kwargs)
        self._stopped = ""  # why the kernel is gone, once it is
        self._output_bytes = 0

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code":
            return cell, resources
        if self._stopped:
            cell.outputs = [error_output("KernelStopped", f"not run: {self._stopped}")]
            return cell, resources
        self._output_bytes = 0
        try:
            if is_grade(cell) and not is_solution(cell):
                self.wait_for_reply(self.kc.execute(RESTORE_ASSERTIONS, silent=True, store_history=False))
            return super().preprocess_cell(cell, resources, index)
        except (DeadKernelError, CellTimeoutError) as exc:
            self._stopped = f"the kernel stopped in cell {index} ({type(exc).__name__}: {str(exc)[:200]})"
            self.log.warning("%s", self._stopped)
            cell.outputs.append(error_output(type(exc).__name__, self._stopped))
            return cell, resources

    def output(self, outs, msg, display_id, cell_index):
        size = len(str(msg.get("content", "")))
        self._output_bytes += size
        if self._output_bytes > self.max_output_bytes:
            if self._output_bytes - size <= self.max_output_bytes:  # say it once
                note = f"\n... output truncated by the grader (over {self.max_output_bytes} bytes) ...\n"
                outs.append(new_output("stream", name="stdout", text=note))
            return None
        return super().output(outs, msg, display_id, cell_index)

    async def _async_handle_timeout(self, timeout, cell=None):
        """Interrupt; a kernel that does not answer within ``interrupt_grace`` seconds is stopped."""
        self.log.error("cell timed out after %ss: interrupting the kernel", timeout)
        await ensure_async(self.km.interrupt_kernel())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.interrupt_grace
        while loop.time() < deadline:
            try:
                msg = await ensure_async(self.kc.shell_channel.get_msg(timeout=1))
            except Empty:
                continue
            if msg.get("msg_type") == "execute_reply":
                return {"content": {**self.error_on_timeout, "status": "error"}}
        await ensure_async(self.km.shutdown_kernel(now=True))
        raise DeadKernelError(f"no reply {timeout}s into the cell and the interrupt was ignored")


class StderrIsNotFailure(NbGraderPreprocessor):
    """Relabel stderr output of test cells as stdout, so only real errors cost points.

    nbgrader gives a test cell zero if it printed anything on stderr, which punishes
    correct code that emits a warning. Failing tests still produce an ``error`` output.
    """

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type == "code" and is_grade(cell) and not is_solution(cell):
            for output in cell.outputs:
                if output.output_type == "stream" and output.name == "stderr":
                    output.name = "stdout"
        return cell, resources


class ForgetEmptyMetadata(NbGraderPreprocessor):
    """Drop the nbgrader metadata that DeduplicateIds empties on a duplicated cell.

    Left in place, the empty dict makes nbgrader's OverwriteCells fail with a KeyError
    on ``grade_id`` and the whole submission would go ungraded.
    """

    def preprocess_cell(self, cell, resources, index):
        if "nbgrader" in cell.metadata and "grade_id" not in cell.metadata.nbgrader:
            del cell.metadata["nbgrader"]
        return cell, resources
