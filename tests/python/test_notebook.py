"""examples/notebooks/ runs top to bottom in a real Jupyter kernel (nbclient), without errors, and
shows what it promises: the report inline."""
import pathlib

import pytest

nbformat = pytest.importorskip("nbformat", reason="nbformat is in requirements.txt; the venv lacks it")
nbclient = pytest.importorskip("nbclient", reason="nbclient is in requirements.txt; the venv lacks it")

NOTEBOOKS = sorted((pathlib.Path(__file__).resolve().parents[2] / "examples" / "notebooks").glob("*.ipynb"))


def test_there_is_a_notebook():
    assert NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_without_errors(path):
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(path.parent)}})
    client.execute()  # raises CellExecutionError, with the cell and traceback, on any error
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    html = [o["data"]["text/html"] for o in outputs if o.output_type == "display_data" and "text/html" in o.get("data", {})]
    if path.name == "bricklab_tour.ipynb":
        assert html and "<svg" in html[0]  # the lower-bound report, inline
        text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
        assert "predicted" in text and "measured" in text
