"""The hook's start-up stays lean: every VM start waits for it. tenacity (which pulls in asyncio) and
structlog are imported only off the fast path (a retry, the journal's detached writer), and typing
never (``xsguard/namedtuple.py`` says why); what only rare paths need (the kernel-log search,
placement hints, other hosts) is not imported by an admission either. Under ``make test-py36`` the
hook's process runs on dom0's Python 3.6."""

import ast
import json
import os
import subprocess
import sys
from typing import Set

from tests.pool import make_vm, small_host

SLOW = ("structlog", "tenacity", "asyncio", "typing")
# the first decision of a boot searches the kernel logs (then kept: ``bootcache``); a refusal asks other
# hosts and words hints; lsevtchn is looked for only when not configured
RARE = ("xsguard.bootlog", "xsguard.peers", "xsguard.model.placement", "xsguard.alerts", "glob")
PROBE = r"""
import json, sys
from xsguard.hook import main
status = main(sys.argv[1:])
print(json.dumps([status, sorted(m for m in sys.modules if m.split(".")[0] in %r or m in %r)]))
""" % (SLOW, RARE)


def run_hook(api, host, vm, python):
    env = {"PATH": "/usr/bin:/bin",
           "XSGUARD_CONFIG": os.path.join(api.sim.get_host_root(host), "etc", "xsguard", "xsguard.conf")}
    out = subprocess.run([python or sys.executable, "-c", PROBE, "-vmuuid", api.VM.get_uuid(vm), "-reason", "none"],
                         stdout=subprocess.PIPE, env=env, check=True).stdout.decode()
    return json.loads(out.strip().splitlines()[-1])


def test_an_admission_imports_nothing_slow(api, dom0_python):
    """A start admitted (the ledger not empty and the ceilings cached, so the steady state's calls): the
    hook process that answers imports neither structlog, tenacity, asyncio nor typing, nor what only
    rare paths need."""
    host = small_host(api, port_limit=4095)
    api.VM.start(make_vm(api, "first", affinity=host), False, False)
    assert run_hook(api, host, make_vm(api, "second", affinity=host), dom0_python) == [0, []]


def test_a_refusal_imports_nothing_slow(api, dom0_python):
    """A start refused (its message, the other hosts asked): still neither structlog, tenacity, asyncio
    nor typing in the hook process."""
    host = small_host(api, port_limit=60, vcpus=4)
    big = make_vm(api, "big", vcpus=8, hvm=True, disks=1, nics=1, affinity=host)
    status, imported = run_hook(api, host, big, dom0_python)
    assert [status, [m for m in imported if m.split(".")[0] in SLOW]] == [2, []]


def test_status_imports_nothing_slow(api):
    """``status`` (the plugin's, the command's) says which structlog and tenacity run without importing them."""
    host = small_host(api, port_limit=4095)
    env = {"PATH": "/usr/bin:/bin",
           "XSGUARD_CONFIG": os.path.join(api.sim.get_host_root(host), "etc", "xsguard", "xsguard.conf")}
    probe = ("import json, sys\nfrom xsguard import config, status\nfrom xsguard.deadline import Deadline\n"
             "data = status.read(config.load(), None, Deadline(5))\n"
             "print(json.dumps([sorted(data['software']), sorted(m for m in sys.modules if m.split('.')[0] in %r)]))"
             % (SLOW,))
    out = subprocess.run([sys.executable, "-c", probe], stdout=subprocess.PIPE, env=env, check=True).stdout.decode()
    assert json.loads(out.strip().splitlines()[-1]) == [["python", "structlog", "tenacity", "xsguard"], []]


def test_lsevtchn_found_in_a_plain_candidate_imports_no_glob(tmp_path):
    """``[dom0] lsevtchn = auto`` (the shipped default), lsevtchn in a candidate without a wildcard: found
    with glob made unimportable; a wildcard candidate is searched with glob."""
    plain, versioned = tmp_path / "libexec-xen-bin", tmp_path / "xen-4.17" / "bin"
    for directory in (plain, versioned):
        directory.mkdir(parents=True)
        (directory / "lsevtchn").write_text("#!/bin/sh\n")
        (directory / "lsevtchn").chmod(0o755)
    probe = ("import sys\nsys.modules['glob'] = None  # importing it raises ImportError\n"
             "from xsguard.probes import find_lsevtchn\nprint(find_lsevtchn('auto', sys.argv[1:]))")

    def find(*candidates):
        proc = subprocess.run([sys.executable, "-c", probe] + [str(c) for c in candidates], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
        return proc.returncode, proc.stdout.decode().strip(), proc.stderr.decode()

    assert find(tmp_path / "absent", plain, tmp_path / "xen-*" / "bin")[:2] == (0, str(plain / "lsevtchn"))
    code, _, err = find(tmp_path / "absent", tmp_path / "xen-*" / "bin")
    assert code == 1 and "import of glob halted" in err


def parsed(path):
    with open(path, encoding="utf-8") as handle:
        return ast.parse(handle.read())


def checked_only(tree):
    """The statements Python never runs: those under ``if TYPE_CHECKING:``."""
    return [stmt for node in ast.walk(tree) if isinstance(node, ast.If) and isinstance(node.test, ast.Name)
            and node.test.id == "TYPE_CHECKING" for stmt in node.body]


def typing_imports_at_run_time(path):
    """The lines of ``path`` that import typing where Python runs them: anywhere but under ``if TYPE_CHECKING:``."""
    tree = parsed(path)
    skipped = {id(sub) for stmt in checked_only(tree) for sub in ast.walk(stmt)}
    return [node.lineno for node in ast.walk(tree) if id(node) not in skipped and (
        isinstance(node, ast.Import) and any(alias.name == "typing" for alias in node.names)
        or isinstance(node, ast.ImportFrom) and node.module == "typing")]


def evaluated_annotations(body, in_function=False):
    """The annotations Python evaluates in these statements: every ``def``'s (run when the ``def`` is,
    at any depth), and a class's or a module's variable annotations (a function's are never)."""
    for stmt in body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = stmt.args
            for arg in args.posonlyargs + args.args + args.kwonlyargs + [a for a in (args.vararg, args.kwarg) if a]:
                if arg.annotation is not None:
                    yield arg.annotation
            if stmt.returns is not None:
                yield stmt.returns
            yield from evaluated_annotations(stmt.body, True)
        elif isinstance(stmt, ast.ClassDef):
            yield from evaluated_annotations(stmt.body, False)
        elif isinstance(stmt, ast.AnnAssign):
            if not in_function:
                yield stmt.annotation
        else:
            for inner in ("body", "orelse", "finalbody", "handlers"):
                yield from evaluated_annotations(getattr(stmt, inner, []), in_function)


def unbound_in_annotations(path):
    """``(line, name)`` for each name an evaluated annotation of ``path`` uses that only mypy binds
    (imported or assigned under ``if TYPE_CHECKING:``): a NameError when Python evaluates it."""
    tree = parsed(path)
    bound_for_mypy: Set[str] = set()
    for stmt in checked_only(tree):
        if isinstance(stmt, (ast.Import, ast.ImportFrom)):
            bound_for_mypy.update((a.asname or a.name).split(".")[0] for a in stmt.names)
        elif isinstance(stmt, ast.Assign):
            bound_for_mypy.update(t.id for t in stmt.targets if isinstance(t, ast.Name))
    return [(name.lineno, name.id) for annotation in evaluated_annotations(tree.body)
            for name in ast.walk(annotation) if isinstance(name, ast.Name) and name.id in bound_for_mypy]


def package_modules():
    """The paths of the package's modules that dom0 runs: all but the simulator's (not in the RPM, and
    kept apart from what it tests: it imports nothing of xsguard)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for directory, _, names in os.walk(os.path.join(root, "xsguard")):
        if os.path.join("xsguard", "sim") not in directory:
            yield from (os.path.join(directory, n) for n in sorted(names) if n.endswith(".py"))


def test_no_module_imports_typing_at_run_time():
    """Every module dom0 runs imports typing only under ``if TYPE_CHECKING:`` (False at run time)."""
    found = {os.path.relpath(p): typing_imports_at_run_time(p) for p in package_modules()}
    assert {p: lines for p, lines in found.items() if lines} == {}
    assert len(found) > 40  # the walk found the package


def test_the_rule_sees_a_typing_import_outside_type_checking(tmp_path):
    """The check above is not blind: an import at the top, in a function or under another ``if`` is found."""
    module = tmp_path / "m.py"
    module.write_text("TYPE_CHECKING = False\nif TYPE_CHECKING:\n    from typing import List\n"
                      "from typing import Dict\nif True:\n    import typing\n"
                      "def f():\n    from typing import Any\n")
    assert typing_imports_at_run_time(str(module)) == [4, 6, 8]


def test_no_evaluated_annotation_names_what_only_mypy_imports():
    """Every annotation Python evaluates, in a nested ``def`` too (evaluated only when its outer function
    runs, which importing the module does not), names only what is bound at run time."""
    found = {os.path.relpath(p): unbound_in_annotations(p) for p in package_modules()}
    assert {p: names for p, names in found.items() if names} == {}


def test_the_annotation_rule_sees_a_typing_name_python_would_evaluate(tmp_path):
    """The check above is not blind: a signature, a nested ``def``'s and a class's annotation are found; a
    string, a function's local annotation and a run-time name are not."""
    module = tmp_path / "m.py"
    module.write_text("TYPE_CHECKING = False\nif TYPE_CHECKING:\n    from typing import Dict, List\n"
                      "    Alias = Dict\n"
                      "def f(a: Dict[str, int], b: 'List[int]') -> int:\n"
                      "    local: List[int] = []\n"
                      "    def inner(c: Alias) -> None:\n        pass\n"
                      "    return 0\n"
                      "class R:\n    field: List[int]\n    other: str\n")
    assert unbound_in_annotations(str(module)) == [(5, "Dict"), (7, "Alias"), (11, "List")]


def test_every_module_imports_on_the_hooks_python(dom0_python):
    """Each module imports on the Python the hooks run on (dom0's 3.6 under ``make test-py36``)."""
    names = ["xsguard" + p.split("xsguard", 1)[1][:-3].replace(os.sep, ".").replace(".__init__", "")
             for p in package_modules() if not p.endswith("__main__.py")]
    probe = ("import importlib, json, sys\nfailed = {}\nfor name in sys.argv[1:]:\n"
             "    try:\n        importlib.import_module(name)\n"
             "    except Exception as exc:\n        failed[name] = repr(exc)\nprint(json.dumps(failed))")
    out = subprocess.run([dom0_python or sys.executable, "-c", probe] + names, stdout=subprocess.PIPE, check=True)
    assert json.loads(out.stdout.decode().strip().splitlines()[-1]) == {}
