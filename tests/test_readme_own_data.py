"""The README's examples of your own data and of sequences, run as a user would run them: each shell block, in a
new folder, with the installed `dlx` command."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import ENV

from dlx.store.checkpoint import load_checkpoint

README = Path(__file__).resolve().parent.parent / "README.md"


def shell_block_under(heading: str) -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split(f"\n{heading}\n", 1)[1]
    found = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert found, f"no bash block under {heading}"
    return found.group(1)


def run_as_a_user(script: str, folder: Path) -> None:
    """The script run by bash in `folder`, stopping at the first failing command, with the installed entry point
    of the environment the tests run in, and the cache in the test's own folder."""
    bin_folder = str(Path(sys.executable).parent)
    env = {**ENV, "PATH": os.pathsep.join([bin_folder, ENV.get("PATH", "")]), "XDG_CACHE_HOME": str(folder / "cache")}
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=folder, env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, f"--- stdout\n{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-3000:]}"
    assert "Traceback" not in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("heading", ["### A folder of images", "### Text classification", "### Language models"])
def test_the_readme_example_runs_as_written(heading: str, tmp_path: Path) -> None:
    run_as_a_user(shell_block_under(heading), tmp_path)
    runs = sorted((tmp_path / "outputs").glob("*/*/summary.json"))
    assert len(runs) == 2


@pytest.mark.slow
def test_the_readme_table_example_runs_as_written(tmp_path: Path) -> None:
    """The "Tables" section: its make_houses.py, then each `$ dlx ...` command of its session, then the streamed
    run of its bash block, which trains the weights of the in-memory run."""
    section = README.read_text(encoding="utf-8").split("\n### Tables: CSV, TSV, Parquet\n", 1)[1].split("\n## ", 1)[0]
    (tmp_path / "make_houses.py").write_text(re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1))
    session = re.search(r"```text\n(.*?)```", section, re.DOTALL).group(1)
    commands = [line[2:] for line in session.splitlines() if line.startswith("$ ") and not line.startswith("$ cat")]
    assert commands[0] == "python make_houses.py" and len(commands) == 4
    run_as_a_user("\n".join([f"{sys.executable} make_houses.py", *commands[1:],
                              shell_block_under("### Tables: CSV, TSV, Parquet")]), tmp_path)
    priced = (tmp_path / "priced.csv").read_text().splitlines()
    assert priced[0] == "rooms,area,town,garden,prediction,probability_no,probability_yes" and len(priced) == 4
    in_memory, streamed = sorted((tmp_path / "outputs").glob("*/*/checkpoints/last.ckpt"))
    assert "streamed from its encoded copy" in (streamed.parent.parent / "train.log").read_text()
    first, second = (load_checkpoint(path)["model"] for path in (in_memory, streamed))
    assert all(torch.equal(first[key], second[key]) for key in first)
    assert load_checkpoint(tmp_path / "outputs" / "houses" / "checkpoints" / "last.ckpt")["state"]["step"] > 0
