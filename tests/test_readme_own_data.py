"""The README's examples of your own data and of sequences, run as a user would run them: each shell block, in a
new folder, with the installed `dlx` command."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ENV

README = Path(__file__).resolve().parent.parent / "README.md"


def shell_block_under(heading: str) -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split(f"\n{heading}\n", 1)[1]
    found = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert found, f"no bash block under {heading}"
    return found.group(1)


@pytest.mark.slow
@pytest.mark.parametrize("heading", ["### A folder of images", "### Text classification", "### Language models"])
def test_the_readme_example_runs_as_written(heading: str, tmp_path: Path) -> None:
    script = shell_block_under(heading)
    # The installed entry point, from the environment the tests run in; the cache in the test's own folder.
    bin_folder = str(Path(sys.executable).parent)
    env = {**ENV, "PATH": os.pathsep.join([bin_folder, ENV.get("PATH", "")]), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, f"--- stdout\n{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-3000:]}"
    assert "Traceback" not in result.stderr
    runs = sorted((tmp_path / "outputs").glob("*/*/summary.json"))
    assert len(runs) == 2
