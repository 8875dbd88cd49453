"""A trial of an Optuna study, as the job that trains it sees it: each validation's monitored metric goes to the
study's storage, and the study's pruner says whether to stop. It works in whatever process or machine the
launcher chose, because all it needs travels as plain values (storage URL, study name, trial number, pruner)
and everything else is read from the storage, which the sweep and the other trials share.

What the job learns comes from Hydra's own settings (hydra.sweeper, hydra.job.num: the trial number), not
from the run's config: resuming a trial, and the "config changed" checks, see the same config as any run."""

import logging
import math
import warnings
from dataclasses import dataclass, field
from typing import Any

from dlx.sweep.search import OPTUNA_SWEEPER, SearchSettings, build_pruner
from dlx.ui.console import logger


@dataclass
class TrialReport:
    """dlx.train.loop.Pruning for trial `number` of a study: report(validation, value) -> stop now?"""

    url: str
    study_name: str
    number: int
    pruner: str | None
    pruner_options: dict[str, Any]
    trial: Any = field(default=None, init=False, repr=False, compare=False)  # opened at the first report

    def __getstate__(self) -> dict[str, Any]:
        # Sent to each rank of trainer.devices=N before training: the open trial (a database session) stays.
        return {**self.__dict__, "trial": None}

    def report(self, validation: int, value: float) -> bool:
        """Record `value` as the trial's intermediate value at step `validation` and ask the pruner. A storage
        that fails here costs the pruning of this run, not the run: it trains on, and says so."""
        import optuna

        try:
            trial = self.open()
            with warnings.catch_warnings():
                # A resumed trial reports again the validations its checkpoint repeats: Optuna keeps the first.
                warnings.filterwarnings("ignore", message=".*is already reported.*")
                trial.report(value if math.isfinite(value) else math.nan, validation)
            return bool(trial.should_prune())
        except optuna.exceptions.UpdateFinishedTrialError:
            return False  # the study recorded the trial as finished already (a job run again by hand)
        except Exception as err:
            logger.warning(f"Warning: could not report validation {validation} to the study's storage "
                           f"({type(err).__name__}: {err}); this trial trains on without pruning this time.")
            return False

    def open(self) -> Any:
        if self.trial is None:
            import optuna

            from dlx.store.study import open_storage

            optuna.logging.set_verbosity(logging.WARNING)
            storage = open_storage(self.url)
            # Only the pruner matters here; a random sampler costs nothing to set up.
            study = optuna.load_study(study_name=self.study_name, storage=storage,
                                      sampler=optuna.samplers.RandomSampler(),
                                      pruner=build_pruner(self.pruner, self.pruner_options))
            trial_id = storage.get_trial_id_from_study_id_trial_number(study._study_id, self.number)
            self.trial = optuna.trial.Trial(study, trial_id)
        return self.trial


def trial_of_job(hydra_cfg: Any) -> TrialReport | None:
    """The trial a job of dlx's Optuna search trains (its job number is the trial's number), or None for any
    other job. A search of several objectives reports nothing: Optuna prunes on one value."""
    from omegaconf import OmegaConf

    if hydra_cfg.sweeper.get("_target_") != OPTUNA_SWEEPER:
        return None
    sweeper = OmegaConf.to_container(hydra_cfg.sweeper, resolve=True)
    assert isinstance(sweeper, dict)  # a DictConfig's container
    settings = SearchSettings.of({str(key): value for key, value in sweeper.items()})
    if settings.multi_objective:
        return None
    return TrialReport(settings.url(hydra_cfg.sweep.dir), settings.study_name, int(hydra_cfg.job.num),
                       settings.pruner, settings.pruner_options)
