"""`dlx ls`, `dlx cat`, `dlx cp`: find, read and copy the built-in configs, as torchtune's `tune ls/cat/cp` do.

Each YAML in conf/ opens with a comment whose first line (after a `# @package` directive) says what the option
is, usually followed by a `dlx train ...` example: `dlx ls` shows that line without the example.
"""

import os
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from dlx.config.schema import config_dir
from dlx.errors import DlxError, check_writable, did_you_mean

HIDDEN_GROUPS = ("hydra/help",)  # the page `dlx train --help` prints, not a choice


@dataclass
class Option:
    group: str  # model, hydra/launcher; "" for the primary config, train.yaml
    name: str
    description: str
    path: Path | None  # None: an option a Hydra plugin registers in code (hydra/launcher=joblib)
    default: bool = False

    @property
    def key(self) -> str:
        return f"{self.group}/{self.name}" if self.group else self.name

    @property
    def file(self) -> Path:
        """The option's YAML file; find_option() never returns a plugin's option, which has none."""
        assert self.path is not None, f"{self.key} is defined in code"
        return self.path


def option_description(path: Path) -> str:
    """The first line of the YAML's opening comment, without its `dlx train ...` example."""
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line.startswith("#"):
            break
        text = line.lstrip("#").strip()
        if not text or text.startswith("@package"):
            continue
        text = text.split(" dlx train ")[0].split("Usage:")[0].strip()
        return text.rstrip(":;,").strip()
    return ""


def defaults() -> dict[str, str]:
    """{group: option} of train.yaml's defaults list: what a bare `dlx train` runs."""
    chosen = {}
    train = OmegaConf.to_container(OmegaConf.load(config_dir() / "train.yaml"))
    assert isinstance(train, dict)  # a YAML mapping
    for entry in train.get("defaults", []):
        if isinstance(entry, dict):
            for group, option in entry.items():
                if isinstance(option, str) and not group.startswith("override"):
                    chosen[group] = option
    return chosen


def list_options(config_dirs: list[Path]) -> list[Option]:
    """Every option of every config group: dlx's, then those of the user's folders (--config-dir)."""
    chosen = defaults()
    options = []
    for number, folder in enumerate([config_dir(), *config_dirs]):
        folder = Path(folder)
        if not folder.is_dir():
            raise DlxError(f"--config-dir {folder} is not a folder. Point it at the folder holding your config "
                           "groups (e.g. my_conf/ with my_conf/model/my_net.yaml).")
        for path in sorted(folder.rglob("*.yaml")):
            group = path.parent.relative_to(folder).as_posix()
            group = "" if group == "." else group
            if group in HIDDEN_GROUPS:
                continue
            options.append(Option(group, path.stem, option_description(path), path,
                                  default=number == 0 and chosen.get(group) == path.stem))
    options += plugin_options({option.key for option in options})
    return sorted(options, key=lambda o: (o.group != "", o.group.startswith("hydra/"), o.group, o.name))


def plugin_options(known: set[str]) -> list[Option]:
    """The launchers and sweepers Hydra and its installed plugins provide (basic, joblib, submitit_slurm,
    optuna...), as Hydra's own config loader lists them."""
    from dlx.config.compose import hydra_session

    options = []
    with hydra_session(None) as hydra:
        for group, default in (("hydra/launcher", "basic"), ("hydra/sweeper", "basic")):
            for name in hydra.config_loader.get_group_options(group):
                if f"{group}/{name}" not in known:
                    options.append(Option(group, name, PLUGIN_DESCRIPTIONS.get(f"{group}/{name}", "a Hydra plugin's"),
                                          None, default=name == default))
    return options


PLUGIN_DESCRIPTIONS = {
    "hydra/launcher/basic": "Jobs one after the other in this process (Hydra's default)",
    "hydra/launcher/joblib": "Jobs side by side in processes on this machine (hydra-joblib-launcher)",
    "hydra/launcher/submitit_local": "Jobs as local processes through submitit, as SLURM would run them",
    "hydra/launcher/submitit_slurm": "Jobs as SLURM jobs through submitit, with the plugin's defaults",
    "hydra/sweeper/basic": "Every combination of the values given (Hydra's default)",
    "hydra/sweeper/optuna": "hydra-optuna-sweeper's search (Optuna 2; dlx's own is hydra/sweeper=dlx_optuna)",
}


def find_option(key: str, config_dirs: list[Path]) -> Option:
    """The option named GROUP/NAME (model/cnn, with or without .yaml; model=cnn also works), or `train`."""
    key = key.removesuffix(".yaml").replace("=", "/").strip("/")
    options = list_options(config_dirs)
    for option in reversed(options):  # the user's own option of a name wins, as on Hydra's search path
        if option.key == key and option.path is None:
            raise DlxError(f"{key} is defined in code by a Hydra plugin, not by a file to print or copy: see its "
                           f"keys with `dlx train {option.group}={option.name} --cfg hydra` and set them on the command "
                           f"line ({option.group.replace('/', '.')}.KEY=VALUE), or copy conf/hydra/launcher/slurm.yaml, "
                           "which extends one.")
        if option.key == key:
            return option
    names = [option.key for option in options]
    raise DlxError(f'There is no config "{key}".{did_you_mean(key, names)} Name one as GROUP/OPTION, e.g. model/cnn; '
                   "`dlx ls` lists them all.")


def print_options(options: list[Option], group: str | None) -> None:
    from rich.markup import escape
    from rich.table import Table

    from dlx.ui.console import wide_console

    if group is not None:
        groups = {o.group for o in options}
        if group not in groups:
            raise DlxError(f'There is no config group "{group}".{did_you_mean(group, groups)} Groups: '
                           f"{', '.join(sorted(g for g in groups if g))}.")
        options = [o for o in options if o.group == group]
    table = Table(title="Config groups and their options (choose with group=option; * the default)",
                  title_justify="left")
    table.add_column("group", no_wrap=True)
    table.add_column("option", no_wrap=True)
    table.add_column("description", overflow="fold")
    previous = None
    for option in options:
        if not option.group:
            continue  # train.yaml composes the groups; it is not one of their options
        table.add_row(escape(option.group) if option.group != previous else "",
                      escape(option.name) + (" *" if option.default else ""), escape(option.description),
                      end_section=False)
        previous = option.group
    wide_console().print(table)
    print("Show one with `dlx cat GROUP/OPTION` (its file) or `dlx cat GROUP=OPTION` (the composed config); copy "
          "one to edit with `dlx cp GROUP/OPTION my_conf/GROUP/NAME.yaml`.")


def composed_config(overrides: list[str], user_config_dir: Path | None) -> str:
    """The config `dlx train OVERRIDES` would run, as YAML (Hydra's own settings left out)."""
    from dlx.config.compose import compose_config

    return OmegaConf.to_yaml(compose_config(overrides, user_config_dir))


def plan_copy(key: str, target: str, force: bool) -> tuple[Path, Path, str]:
    """Where `dlx cp` copies a built-in config file for the user to edit (to a file, or into a folder when
    `target` is one or ends with a slash): (the option's file, the copy's path, how to use it). A destination
    that is a symbolic link is refused, --force or not: writing through it would change the file it points to
    (or create one, for a dangling link)."""
    option = find_option(key, [])
    group_parts = option.group.split("/") if option.group else []
    destination = Path(target)
    if destination.is_dir() or target.endswith(("/", os.sep)):
        # A folder: my_conf/ -> my_conf/model/cnn.yaml, and my_conf/model/ -> my_conf/model/cnn.yaml
        if group_parts and destination.name != group_parts[-1]:
            destination = destination.joinpath(*group_parts)
        destination = destination / option.file.name
    if destination.suffix != ".yaml":
        destination = destination.with_name(destination.name + ".yaml")
    if destination.is_symlink():
        raise DlxError(f"{destination} is a symbolic link (to {os.readlink(destination)}): dlx cp does not write "
                       "through links, even with --force. Remove the link, or choose another name.")
    if destination.exists() and not force:
        raise DlxError(f"{destination} exists already: not overwritten. Pass --force to replace it, or choose "
                       "another name.")
    check_writable(destination, "destination")
    return option.file, destination, how_to_use(destination, group_parts)


def how_to_use(destination: Path, group_parts: list[str]) -> str:
    """The command that uses the copy: Hydra finds an option of group G at CONFIG_DIR/G/NAME.yaml."""
    name = destination.stem
    if not group_parts:
        return (f"Use it with: dlx train --config-dir={destination.parent} --config-name={name}")
    folders = destination.parent.parts[-len(group_parts):] if len(destination.parent.parts) >= len(group_parts) else ()
    group = "/".join(group_parts)
    if list(folders) != group_parts:
        return (f"Hydra finds an option of the {group} group in a folder named {group}: move it to "
                f"MY_CONF/{group}/{name}.yaml, then use it with: dlx train --config-dir=MY_CONF {group}={name}")
    root = destination.parent
    for _ in group_parts:
        root = root.parent
    return f"Use it with: dlx train --config-dir={root} {group}={name}"
