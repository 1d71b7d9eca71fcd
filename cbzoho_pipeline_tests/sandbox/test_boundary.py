"""The line between the product and its sandbox: `cbzoho_pipeline` runs without `cbzoho_sandbox`.

Why this exists: the sandbox is a separate package (the `sandbox` extra) so that a production install
carries no test server and no test-only code path. Only the CLI's sandbox and demo commands may reach it,
and only when they run. An import of the sandbox from product code would work on every developer machine
(the `dev` extra installs both) and break only in production, so it is caught here instead: once by reading
the source, once by importing every product module in an interpreter where the sandbox cannot be imported.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

from cbzoho_pipeline_tests.conftest import REPO_ROOT

PRODUCT = REPO_ROOT / "cbzoho_pipeline"
# The only product modules that may name the sandbox; cli.py only inside the functions of its commands.
ALLOWED = {"cli.py", "demo.py"}

# Run first in a child interpreter: any import of cbzoho_sandbox is recorded and fails, as it would where the
# sandbox extra is not installed.
BLOCK_SANDBOX = """
import sys
attempts = []
class _NoSandbox:
    def find_spec(self, name, path=None, target=None):
        if name == "cbzoho_sandbox" or name.startswith("cbzoho_sandbox."):
            attempts.append(name)
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, _NoSandbox())
"""


def _sandbox_imports(tree: ast.AST) -> list[ast.stmt]:
    found: list[ast.stmt] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            continue
        if any(name == "cbzoho_sandbox" or name.startswith("cbzoho_sandbox.") for name in names):
            found.append(node)
    return found


def _names_in_code(tree: ast.AST) -> list[ast.Constant]:
    """String constants naming the sandbox package, docstrings aside (they may say where things went)."""
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    return [node for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and "cbzoho_sandbox" in node.value and id(node) not in docstrings]


def test_product_source_names_the_sandbox_only_in_the_cli_and_the_demo():
    offenders = []
    for path in sorted(PRODUCT.rglob("*.py")):
        relative = path.relative_to(PRODUCT).as_posix()
        tree = ast.parse(path.read_text())
        imports = _sandbox_imports(tree)
        if relative not in ALLOWED:
            offenders += [f"{relative}:{node.lineno}" for node in imports]
            # by name too: importlib.import_module("cbzoho_sandbox"), `python -m cbzoho_sandbox`...
            offenders += [f"{relative}:{node.lineno}" for node in _names_in_code(tree)]
    assert not offenders, f"product code imports the sandbox: {offenders}"

    cli = ast.parse((PRODUCT / "cli.py").read_text())
    top_level = [node.lineno for node in cli.body if node in _sandbox_imports(cli)]
    assert not top_level, f"cli.py imports the sandbox at module level (line {top_level}); import it in the command"


def test_every_product_module_imports_without_the_sandbox():
    script = BLOCK_SANDBOX + """
import importlib, json, pkgutil
import cbzoho_pipeline
names = sorted(m.name for m in pkgutil.walk_packages(cbzoho_pipeline.__path__, "cbzoho_pipeline.")
               if m.name not in ("cbzoho_pipeline.cli", "cbzoho_pipeline.demo"))
for name in names:
    importlib.import_module(name)
print(json.dumps({"imported": names, "attempts": attempts,
                  "loaded": sorted(m for m in sys.modules if m.split(".")[0] == "cbzoho_sandbox")}))
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert "cbzoho_pipeline.definitions" in report["imported"] and "cbzoho_pipeline.chargebee.client" in report[
        "imported"], report["imported"]
    assert report["attempts"] == [] and report["loaded"] == [], report


def test_sandbox_commands_without_the_sandbox_say_what_to_install(tmp_path: Path):
    for command in (["sandbox", "--port", "0"], ["demo", "--port", "0", "--sandbox-port", "0"],
                    ["sandbox-token", "--info-file", str(tmp_path / "info.json")]):
        script = BLOCK_SANDBOX + f"from cbzoho_pipeline.cli import main\nsys.exit(main({command!r}))\n"
        done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                              timeout=120, env={**_clean_env(), "CBZOHO_HOME": str(tmp_path / "home")})
        assert done.returncode == 2, (command, done.stdout, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "install cbzoho[sandbox]" in lines[0], (command, done.stderr)
        assert lines[0].startswith(f"cbzoho {command[0]}: "), lines
    assert not (tmp_path / "home").exists()  # refused before anything was started or written


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
