"""Guard: undo interpreter tampering before each test cell, and flag what cannot be undone.

Tests run in the student's own Python process, so a submission can change how later
cells run: an AST or input transformer that wraps every cell in ``try/except``, an
event callback, a trace or profile hook, a replaced builtin or testing function.

* :data:`SETUP` runs silently in the kernel before the first cell, when no student code
  has run yet. It records the pristine state and defines the restore function.
* Before each test cell the grader evaluates :func:`check_expression` as a
  ``user_expressions`` entry of an empty execute request. Expressions are evaluated by
  ``eval`` without any input or AST transformer, so a transformer cannot rewrite the
  check away. The check puts every hook back and answers with what it undid, signed
  with a per-kernel nonce; no answer (or a wrong one) is itself reported.
* :func:`scan` reads the submitted code on the host (outside the student's process,
  where nothing can be faked) for the APIs these attacks use.

Whatever was undone or found makes the submission "needs review" (see grade.Record):
an in-process guard can itself be attacked by code that knows it, so the flag sends an
instructor to look rather than pretending the score is certain.
"""

from __future__ import annotations

import ast
import re
import secrets

GUARD_NAME = "__autograder_guard__"

# Runs in the kernel. Format with nonce=...; braces of the code itself are doubled.
SETUP = """
def _autograder_make_guard(nonce):
    import builtins, importlib, sys, threading, types
    ip = get_ipython()
    kernel = getattr(ip, "kernel", None)
    shell_methods = ("run_cell", "run_cell_async", "run_ast_nodes", "run_code", "transform_cell", "transform_ast",
                     "showtraceback", "user_expressions", "_run_cell", "should_run_async")
    kernel_methods = ("do_execute", "execute_request")
    missing = object()
    owners = [(type(ip), shell_methods, "shell"), (ip, shell_methods, "shell")]
    if kernel is not None:
        owners += [(type(kernel), kernel_methods, "kernel"), (kernel, kernel_methods, "kernel")]
    monitoring = getattr(sys, "monitoring", None)
    pristine = dict(
        builtins=dict(vars(builtins)),
        shadows={{name: value for name, value in ip.user_ns.items() if name in vars(builtins)}},
        ast=list(ip.ast_transformers),
        post=list(ip.input_transformers_post),
        manager=ip.input_transformer_manager,
        cleanup=list(ip.input_transformer_manager.cleanup_transforms),
        line=list(ip.input_transformer_manager.line_transforms),
        tokens=list(ip.input_transformer_manager.token_transformers),
        events={{name: list(callbacks) for name, callbacks in ip.events.callbacks.items()}},
        hooks=(sys.excepthook, sys.displayhook, sys.gettrace(), sys.getprofile()),
        custom_exceptions=ip.custom_exceptions,
        methods=[(owner, {{name: vars(owner).get(name, missing) for name in names}}, label)
                 for owner, names, label in owners],
        tools={{t for t in range(6) if monitoring.get_tool(t) is not None}} if monitoring else set(),
        threads={{t.ident for t in threading.enumerate()}},
    )
    aliases = {{"np": "numpy", "pd": "pandas", "plt": "matplotlib.pyplot", "keras": "keras", "tf": "tensorflow",
               "numpy": "numpy", "math": "math"}}
    ignored_builtins = {{"_", "__", "___", "exit", "quit", "get_ipython", "display", "__IPYTHON__"}}
    libraries = {{"matplotlib", "matplotlib_inline", "IPython", "ipykernel", "ipywidgets", "tqdm", "keras",
                 "tensorflow", "jax", "seaborn", "pandas"}}

    def from_library(callback):  # libraries register callbacks of their own (pyplot's inline figure flush)
        module = getattr(callback, "__module__", None) or ""
        return module.split(".")[0] in libraries

    def guard():
        undone = []
        if ip.input_transformer_manager is not pristine["manager"]:
            ip.input_transformer_manager = pristine["manager"]
            undone.append("input transformer manager replaced")
        for label, attr, owner in (("AST transformers", "ast_transformers", ip),
                                   ("input transformers", "input_transformers_post", ip),
                                   ("cleanup transformers", "cleanup_transforms", ip.input_transformer_manager),
                                   ("line transformers", "line_transforms", ip.input_transformer_manager),
                                   ("token transformers", "token_transformers", ip.input_transformer_manager)):
            key = {{"ast_transformers": "ast", "input_transformers_post": "post", "cleanup_transforms": "cleanup",
                    "line_transforms": "line", "token_transformers": "tokens"}}[attr]
            if list(getattr(owner, attr)) != pristine[key]:
                setattr(owner, attr, list(pristine[key]))
                undone.append(label + " added")
        for name in set(ip.events.callbacks) | set(pristine["events"]):
            current, original = list(ip.events.callbacks.get(name, [])), pristine["events"].get(name, [])
            foreign = [cb for cb in current if cb not in original and not from_library(cb)]
            lost = [cb for cb in original if cb not in current]
            if foreign or lost:
                ip.events.callbacks[name] = [cb for cb in current if cb not in foreign] + lost
                undone.append("event callbacks (" + name + ") " + ("registered" if foreign else "removed"))
        excepthook, displayhook, trace, profile = pristine["hooks"]
        if sys.gettrace() is not trace:
            sys.settrace(trace)
            undone.append("trace hook (sys.settrace)")
        if sys.getprofile() is not profile:
            sys.setprofile(profile)
            undone.append("profile hook (sys.setprofile)")
        if getattr(threading, "_trace_hook", None) or getattr(threading, "_profile_hook", None):
            threading.settrace(None)
            threading.setprofile(None)
            undone.append("thread trace/profile hook")
        if sys.excepthook is not excepthook or sys.displayhook is not displayhook:
            sys.excepthook, sys.displayhook = excepthook, displayhook
            undone.append("sys.excepthook/displayhook replaced")
        if ip.custom_exceptions != pristine["custom_exceptions"]:
            ip.custom_exceptions = pristine["custom_exceptions"]
            undone.append("custom exception handler (set_custom_exc)")
        if monitoring is not None:
            for tool in range(6):
                if monitoring.get_tool(tool) is not None and tool not in pristine["tools"]:
                    monitoring.free_tool_id(tool)
                    undone.append("sys.monitoring tool " + str(tool))
        for owner, originals, label in pristine["methods"]:
            for name, original in originals.items():
                if vars(owner).get(name, missing) is not original:
                    if original is missing:
                        delattr(owner, name)
                    else:
                        setattr(owner, name, original)
                    undone.append(label + " method " + name + " replaced")
        current = vars(builtins)
        for name in set(current) | set(pristine["builtins"]):
            if name in ignored_builtins:
                continue
            if name not in pristine["builtins"]:
                if name.startswith("__"):  # libraries keep state there (pybind11's internals): leave it
                    continue
                del current[name]
                undone.append("builtin " + name + " added")
            elif current.get(name) is not pristine["builtins"][name]:
                current[name] = pristine["builtins"][name]
                undone.append("builtin " + name + " replaced")
        for name, value in list(ip.user_ns.items()):
            real = pristine["builtins"].get(name)
            if name in pristine["shadows"] and value is pristine["shadows"][name]:
                continue
            if callable(real) and value is not real and callable(value) and not name.startswith("_"):
                del ip.user_ns[name]
                undone.append("builtin " + name + " shadowed by a global")
        for name, module in aliases.items():
            if name in ip.user_ns and module in sys.modules and ip.user_ns[name] is not sys.modules[module]:
                ip.user_ns[name] = sys.modules[module]
                undone.append(name + " is not the " + module + " module")
        for name in ("numpy.testing._private.utils", "numpy.testing"):
            if name in sys.modules:
                if not isinstance(sys.modules[name], types.ModuleType):
                    del sys.modules[name]
                    undone.append(name + " replaced in sys.modules")
                else:
                    importlib.reload(sys.modules[name])
        if "numpy" in sys.modules and "numpy.testing" in sys.modules:
            sys.modules["numpy"].testing = sys.modules["numpy.testing"]
        threads = [t.name for t in threading.enumerate() if t.ident not in pristine["threads"] and t.is_alive()
                   and not t.daemon]
        if threads:
            undone.append("threads still running: " + ", ".join(threads[:3]))
        return nonce + repr(sorted(set(undone)))

    return guard


get_ipython().user_ns[{name!r}] = _autograder_make_guard({nonce!r})
del _autograder_make_guard
"""


def new_nonce() -> str:
    return secrets.token_hex(8)


def setup_code(nonce: str) -> str:
    return SETUP.format(name=GUARD_NAME, nonce=nonce)


def check_expression() -> str:
    return f"{GUARD_NAME}()"


def read_answer(reply: dict, nonce: str) -> list[str]:
    """What the guard undid, from an execute reply; a missing or unsigned answer is a finding."""
    answer = (reply.get("content", {}).get("user_expressions") or {}).get("guard") or {}
    if answer.get("status") != "ok":
        return [f"the grader's guard did not run ({answer.get('ename', 'no answer')})"]
    text = answer.get("data", {}).get("text/plain", "")
    try:
        text = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return ["the grader's guard gave an unreadable answer"]
    if not isinstance(text, str) or not text.startswith(nonce):
        return ["the grader's guard gave a forged answer"]
    try:
        return list(ast.literal_eval(text[len(nonce):]))
    except (ValueError, SyntaxError):
        return ["the grader's guard gave an unreadable answer"]


# APIs that change how later cells run or that reach the grader's own objects. Plain
# course code never needs them; finding one is a reason to look, not a penalty.
SUSPICIOUS = {
    r"\bast_transformers\b": "AST transformers",
    r"\binput_transformers?\w*": "input transformers",
    r"\binput_transformer_manager\b": "input transformer manager",
    r"\bevents\s*\.\s*(register|callbacks)": "IPython event callbacks",
    r"\bset(trace|profile)\b": "trace/profile hooks",
    r"\bsys\s*\.\s*monitoring\b": "sys.monitoring",
    r"\bset_custom_exc\b": "custom exception handler",
    r"\bbuiltins\b": "builtins",
    r"\b(excepthook|displayhook)\b": "interpreter hooks",
    r"\b(showtraceback|run_cell\w*|run_ast_nodes|run_code|transform_cell|do_execute|execute_request)\b":
        "the shell's or kernel's execution methods",
    r"\bautograder\b|__autograder": "the grader's own objects",
    r"\blinecache\b|\b_getframe\b|\bf_back\b|\bf_globals\b|\bgc\s*\.\s*get_referr":
        "frames or the interpreter's caches",
    r"\bctypes\b": "ctypes",
    r"\bsys\s*\.\s*modules\s*\[[^\]]+\]\s*=": "sys.modules replaced",
    r"\btesting\s*\.\s*\w+\s*=": "testing functions replaced",
}


def scan(sources: list[str]) -> list[str]:
    """The suspicious APIs used in a submission's code cells (names, not code)."""
    text = "\n".join(sources)
    return sorted({label for pattern, label in SUSPICIOUS.items() if re.search(pattern, text)})
