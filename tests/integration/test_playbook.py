"""examples/playbook.ipynb, executed top to bottom with nbclient against the session's stack.

The kernel is ipykernel's native spec only (this interpreter, whatever kernel specs the
machine has elsewhere), started in examples/ with a fresh team's key in its environment.
The executed notebook stays in memory: nothing is written back into examples/."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NOTEBOOK = EXAMPLES / "playbook.ipynb"
CELL_TIMEOUT = 120  # seconds per cell; the whole notebook takes a few seconds once the stack is warm


def read_notebook() -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOK, as_version=4)


def tagged(notebook: nbformat.NotebookNode, tag: str) -> nbformat.NotebookNode:
    [cell] = [c for c in notebook.cells if tag in c.get("metadata", {}).get("tags", [])]
    return cell


def text_of(cell: nbformat.NotebookNode) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def mime_types(cell: nbformat.NotebookNode) -> set[str]:
    return {mime for o in cell.outputs if o.output_type == "display_data" for mime in o.data}


def test_committed_notebook_has_no_outputs():
    notebook = read_notebook()
    nbformat.validate(notebook)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert code, "no code cells"
    assert all(not c.outputs and c.execution_count is None for c in code), "clear the outputs before committing"


def execute(notebook: nbformat.NotebookNode, env: dict[str, str]) -> None:
    """Run every cell in place (in memory) on ipykernel's native spec: this interpreter, whatever
    kernel specs the machine has elsewhere; the kernel's working directory is examples/."""
    native_only = KernelSpecManager(kernel_dirs=[], ensure_native_kernel=True)
    manager = KernelManager(kernel_name="python3", kernel_spec_manager=native_only)
    client = NotebookClient(notebook, km=manager, timeout=CELL_TIMEOUT, resources={"metadata": {"path": str(EXAMPLES)}})
    client.execute(env=env)  # CellExecutionError on the first failing cell (its assertion and traceback)


def test_playbook_runs_top_to_bottom(stack, make_caller):
    caller = make_caller("playbook", "member")
    notebook = read_notebook()
    notebook.cells.append(nbformat.v4.new_code_cell("import sys\nprint(sys.executable)", id="which-python"))
    env = {**os.environ, "APERTURE_URL": stack.gateway_url, "APERTURE_API_KEY": caller.key}

    execute(notebook, env)

    assert text_of(notebook.cells[-1]).strip() == sys.executable  # the kernel ran on this venv
    assert f"key {caller.key[:8]}…" in text_of(tagged(notebook, "setup"))
    me = text_of(tagged(notebook, "me"))
    assert f"team     {caller.team}" in me and f"key_id   {caller.key_id}" in me and "role     member" in me
    assert text_of(tagged(notebook, "upload")).count(" created ") == 3  # a fresh team: nothing is a duplicate
    assert text_of(tagged(notebook, "wait")).count(" processed ") == 3
    assert "espresso" in text_of(tagged(notebook, "record"))
    assert "image/png" in mime_types(tagged(notebook, "convert"))
    assert "image/jpeg" in mime_types(tagged(notebook, "signed"))
    assert "image/webp" in mime_types(tagged(notebook, "job"))
    assert text_of(tagged(notebook, "delete")).startswith("404 ")
