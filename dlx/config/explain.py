"""Hydra's and OmegaConf's errors as one paragraph: the key or option that was wrong, the closest existing
one, and what to type instead."""

from dlx.errors import did_you_mean, format_choices

HELP_HINT = "Run `dlx train --help` for the config groups and their options, `dlx train --cfg job` for the composed config."


def explain_omegaconf_error(err: Exception, hint: str = HELP_HINT, can_add_keys: bool = True) -> str:
    """A paragraph for an OmegaConf key or type error (raised directly or as the cause of a Hydra error)."""
    from omegaconf.errors import OmegaConfBaseException, ValidationError

    cause = err if isinstance(err, OmegaConfBaseException) else (err.__cause__ or err.__context__)
    message = str(getattr(cause, "msg", cause)).splitlines()[0] if cause is not None else ""
    if isinstance(cause, OmegaConfBaseException) and message.startswith("Key '") and " not in " in message:
        full_key = cause.full_key or str(cause.key)
        parent = cause.parent_node
        known = [str(k) for k in parent.keys()] if parent is not None else []
        parent_key = full_key.rpartition(".")[0]
        where = f'under "{parent_key}"' if parent_key else "at the top level"
        adding = f" To add a new key on purpose, prefix it with + (+{full_key}=...)." if can_add_keys else ""
        return (f'Unknown config key "{full_key}".{did_you_mean(str(cause.key), known)} Keys {where}: '
                f"{format_choices(known)}.{adding} {hint}")
    if isinstance(cause, ValidationError):
        return f'Invalid value for "{cause.full_key}": {message}. {hint}'
    if isinstance(cause, OmegaConfBaseException):
        return f'Config error at "{cause.full_key}": {message}. {hint}'
    first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return f"{first_line} {hint}"


# Config options that Hydra plugins provide, and the plugin that does (all in the "sweep" extra).
PLUGINS = {
    ("hydra/launcher", "joblib"): "hydra-joblib-launcher",
    ("hydra/launcher", "submitit_local"): "hydra-submitit-launcher",
    ("hydra/launcher", "submitit_slurm"): "hydra-submitit-launcher",
}


def explain_composition_error(err: Exception) -> str:
    from hydra.errors import MissingConfigException

    if isinstance(err, MissingConfigException) and err.missing_cfg_file and "/" in err.missing_cfg_file:
        group, _, option = err.missing_cfg_file.rpartition("/")
        options = list(err.options or [])
        plugin = PLUGINS.get((group, option))
        if plugin:
            return (f"{group}={option} comes from {plugin}, which is not installed. Install dlx's sweep extras: "
                    f'pip install "dlx[sweep]" (or pip install {plugin}).')
        return (f'There is no {group} option "{option}".{did_you_mean(option, options)} '
                f"Choose one of: {format_choices(options)} (or add {group}/{option}.yaml to your --config-dir). "
                f"{HELP_HINT}")
    if str(err).startswith("Ambiguous value for argument '"):  # a swept value (key=a,b) in a single run
        override = str(err).split("'")[1]
        key, _, value = override.partition("=")
        return (f"{override} gives one run several values. To sweep over them, add -m (dlx train -m ... {override}); "
                f"for a list, write {key}=[{value}]; for a string with commas, quote it: {key}='\"{value}\"'.")
    return explain_omegaconf_error(err)
