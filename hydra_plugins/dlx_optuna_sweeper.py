"""hydra/sweeper=dlx_optuna: dlx's Optuna sweeper, where Hydra looks for it.

Hydra instantiates a sweeper only from a class it found by importing the modules of the `hydra_plugins`
namespace package, and only if the class's own module is in that namespace. The sweeper lives in
dlx.sweep.optuna_sweeper; this module names it for Hydra, and the wheel ships it beside the `dlx` package."""

from dlx.sweep.optuna_sweeper import OptunaSweeper


class DlxOptunaSweeper(OptunaSweeper):
    """dlx.sweep.optuna_sweeper.OptunaSweeper under the name conf/hydra/sweeper/dlx_optuna.yaml gives Hydra."""
