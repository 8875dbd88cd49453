"""dlx installed from a built wheel finds its config tree (shipped inside the package as dlx/conf)."""

import subprocess
import sys
import zipfile
from pathlib import Path

from conftest import ENV

REPO = Path(__file__).resolve().parent.parent


def test_wheel_ships_conf_and_uses_it(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "dist"), str(REPO)], check=True, capture_output=True)
    wheel = next((tmp_path / "dist").glob("dlx-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for path in ["dlx/conf/train.yaml", "dlx/conf/model/cnn.yaml", "dlx/conf/hydra/help/dlx.yaml",
                 "dlx/conf/experiment/tutorial_ffn.yaml", "dlx/cli/__init__.py", "dlx/conf/hydra/sweeper/dlx_optuna.yaml",
                 "hydra_plugins/dlx_optuna_sweeper.py"]:
        assert path in names
    # hydra_plugins is a namespace package that other plugins share: the wheel adds a module, never an __init__.
    assert "hydra_plugins/__init__.py" not in names
    assert not [n for n in names if n.startswith(("tests/", "outputs/"))]

    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    env = {**ENV, "PYTHONPATH": str(site)}  # ahead of the editable install on sys.path
    where = subprocess.run([sys.executable, "-c", "from dlx.config.schema import config_dir; print(config_dir())"], env=env,
                           capture_output=True, text=True, check=True, cwd=tmp_path)
    assert Path(where.stdout.strip()) == site / "dlx" / "conf"
    shown = subprocess.run([sys.executable, "-m", "dlx", "train", "--cfg", "job", "model=cnn"], env=env,
                           capture_output=True, text=True, check=True, cwd=tmp_path)
    assert "_target_: dlx.models.cnn.ConvNet" in shown.stdout
    # Hydra finds the installed sweeper where it looks for plugins, beside any other plugin's modules.
    found = subprocess.run([sys.executable, "-c", "from hydra.core.plugins import Plugins; import sys; "
                            "c = Plugins.instance().class_name_to_class['hydra_plugins.dlx_optuna_sweeper.DlxOptunaSweeper']; "
                            "print(sys.modules[c.__module__].__file__)"], env=env, capture_output=True, text=True,
                           check=True, cwd=tmp_path)
    assert Path(found.stdout.strip()) == site / "hydra_plugins" / "dlx_optuna_sweeper.py"
