"""nbgrader's Execute preprocessor, hardened for untrusted submissions.

Used in place of ``nbgrader.preprocessors.Execute`` in the autograde pipeline and, as
:class:`PublicRun`, in the feedback pipeline (see :mod:`autograder.course`). What it adds:

* kernels start in the sandbox (:class:`autograder.sandbox.SandboxedKernelManager`);
  what the sandbox left on the host is removed when the notebook is done, dead kernel
  or not;
* before each test cell, interpreter tampering is undone and reported
  (:mod:`autograder.guard`);
* a kernel that dies (``os._exit``, a resource limit, a crash) or that stays stuck
  after a timed-out cell is interrupted costs only the cells not run yet: they get
  an error output (so they score zero) and grading of the submission goes on;
* the output kept per cell is capped in bytes as it arrives, so a 100 MB print never
  reaches the notebook (nbgrader's LimitOutput only counts lines, afterwards);
* what happened is logged in lines the grader reads back (:data:`REVIEW`,
  :data:`PROBLEM`), naming the part (grade id and points) and the cause.

:class:`StderrIsNotFailure` then stops nbgrader from zeroing a passing test cell
just because correct code printed a warning on stderr.
"""

from __future__ import annotations

import asyncio
import signal
import time
from queue import Empty

from jupyter_client.utils import ensure_async
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat.v4 import new_output
from nbgrader.preprocessors import ClearHiddenTests, Execute, NbGraderPreprocessor
from nbgrader.utils import is_grade, is_solution
from traitlets import Integer

from autograder import guard
from autograder.sandbox import SandboxedKernelManager

IGNORED_INTERRUPT = "timed out after"
REVIEW = "autograder: needs review: "  # log prefixes that grade.py reads back
PROBLEM = "autograder: problem: "
TIMING = "autograder: seconds: "  # kernel (start to ready), student cells, test cells
KERNEL = "autograder: kernel: "  # warm or cold, and why a warm start failed


def error_output(ename: str, evalue: str):
    return new_output("error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"])


def part_name(cell, index: int) -> str:
    """How a reason names a cell: its grade id and points, or its position."""
    meta = cell.metadata.get("nbgrader", {})
    if "grade_id" not in meta:
        return f"cell {index}"
    points = f" ({meta['points']:g} points)" if meta.get("grade") and "points" in meta else ""
    return f"{meta['grade_id']}{points}"


def is_test(cell) -> bool:
    return cell.cell_type == "code" and is_grade(cell) and not is_solution(cell)


def _death_cause(km) -> str:
    process = getattr(getattr(km, "provisioner", None), "process", None)
    code = process.poll() if process is not None else None
    if code is None:
        return "the kernel stopped answering"
    sig = -code if code < 0 else code - 128 if code > 128 else 0
    if sig == signal.SIGXCPU:
        return "the kernel hit the CPU-time limit"
    if sig == signal.SIGKILL:
        return "the kernel was killed (SIGKILL: a memory or process limit)"
    if sig:
        return f"the kernel died ({signal.Signals(sig).name})"
    return f"the kernel exited (status {code})"


class GuardedExecute(Execute):
    iopub_timeout = Integer(60, help="seconds to wait for a finished cell's last output (a huge print takes a while)"
                            ).tag(config=True)
    max_output_bytes = Integer(100_000, help="output kept per cell; the rest is dropped").tag(config=True)
    interrupt_grace = Integer(10, help="seconds a timed-out kernel has to honour the interrupt").tag(config=True)

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("kernel_manager_class", SandboxedKernelManager)
        super().__init__(*args, **kwargs)

    def preprocess(self, nb, resources=None, km=None):
        self._stopped = ""  # why the kernel is gone, once it is
        self._not_run: list[str] = []
        self._problems: list[str] = []
        self._review: dict[str, str] = {}  # finding -> first part it was found before
        self._nonce, self._sandbox, self._output_bytes = None, None, 0
        self._started, self._seconds = time.perf_counter(), {"kernel": 0.0, "student": 0.0, "tests": 0.0}
        try:
            return super().preprocess(nb, resources, km)
        finally:
            if self._sandbox is not None and hasattr(self._sandbox, "release_sandbox"):
                self._sandbox.release_sandbox()  # also when the kernel died: no leftovers on the host
            self._report()

    def _report(self):
        if self._stopped:
            not_run = f"; not run: {', '.join(self._not_run)}" if self._not_run else ""
            self._problems.append(f"{self._stopped}{not_run}")
        for problem in self._problems:
            self.log.warning("%s%s", PROBLEM, problem)
        for finding, where in self._review.items():
            self.log.warning("%s%s (undone before %s)", REVIEW, finding, where)
        self.log.info("%s%s", TIMING, " ".join(f"{k}={v:.2f}" for k, v in self._seconds.items()))

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code":
            return cell, resources
        if self._stopped:
            cell.outputs = [error_output("KernelStopped", f"not run: {self._stopped}")]
            if is_grade(cell):
                self._not_run.append(part_name(cell, index))
            return cell, resources
        self._output_bytes, self._part = 0, part_name(cell, index)
        started = time.perf_counter()
        try:
            if self._nonce is None:
                self._seconds["kernel"] = started - self._started  # the kernel is ready before the first cell
                self._sandbox = self.km
                if hasattr(self.km, "start_mode"):
                    self.log.info("%s%s", KERNEL, self.km.start_mode())
                self._start_guard()
            if is_test(cell):
                self._check_guard(part_name(cell, index))
            return super().preprocess_cell(cell, resources, index)
        except (DeadKernelError, CellTimeoutError) as exc:
            ignored_interrupt = str(exc).startswith(IGNORED_INTERRUPT)
            cause = _death_cause(self.km) if isinstance(exc, DeadKernelError) and not ignored_interrupt else str(exc)
            self._stopped = f"the kernel stopped in {self._part}: {cause[:200]}"
            cell.outputs.append(error_output(type(exc).__name__, self._stopped))
            return cell, resources
        finally:
            self._seconds["tests" if is_test(cell) else "student"] += time.perf_counter() - started

    def _start_guard(self):
        self._nonce = guard.new_nonce()
        # Set up the way the checks run (an expression evaluated after an empty cell), so both see
        # the interpreter in the same state (outside IPython's per-cell traps).
        reply = self.wait_for_reply(self.kc.execute("", silent=True, store_history=False, user_expressions={
            "setup": f"exec({guard.setup_code(self._nonce)!r})"}))
        answer = (reply or {}).get("content", {}).get("user_expressions", {}).get("setup", {})
        if answer.get("status") != "ok":
            self._review.setdefault("the grader's guard could not be installed", "the first cell")

    def _check_guard(self, part: str):
        try:
            reply = self.wait_for_reply(self.kc.execute(
                "", silent=True, store_history=False, user_expressions={"guard": guard.check_expression()}))
            findings = guard.read_answer(reply or {}, self._nonce)
        except TimeoutError:
            findings = ["the grader's guard did not answer in time"]
        for finding in findings:
            self._review.setdefault(finding, part)

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
                self._problems.append(f"{self._part} timed out after {timeout} s (interrupted)")
                return {"content": {**self.error_on_timeout, "status": "error"}}
        await ensure_async(self.km.shutdown_kernel(now=True))
        raise DeadKernelError(f"{IGNORED_INTERRUPT} {timeout} s and ignored the interrupt")


class PublicRun(GuardedExecute):
    """Execute the notebook as its student sees it, for feedback: every hidden-test region
    is removed and every output cleared *before* a fresh sandboxed kernel runs it, so no
    output can carry hidden-test text, however the submission tried to capture it. Scores
    still come from the gradebook (nbgrader's GetGrades)."""

    def preprocess(self, nb, resources=None, km=None):
        clear = ClearHiddenTests(enforce_metadata=False)
        for index, cell in enumerate(nb.cells):
            clear.preprocess_cell(cell, resources, index)
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
        nb, resources = super().preprocess(nb, resources, km)
        for cell in nb.cells:
            meta = cell.metadata.get("nbgrader", {})
            failed_silently = not any(o.output_type == "error" for o in cell.get("outputs", []))
            if is_test(cell) and failed_silently and (meta.get("score") or 0) < (meta.get("points") or 0):
                cell.outputs.append(new_output("stream", name="stdout", text=HIDDEN_FAILED + "\n"))
        return nb, resources

    def _report(self):  # problems of the feedback run are not grading problems
        pass


HIDDEN_FAILED = "A hidden test in this cell failed: its code is not shown. Check your function on other inputs."


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
