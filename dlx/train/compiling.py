"""trainer.compile=true: the training steps call the model through torch.compile; evaluation, checkpoints,
summaries and exports use the model itself, so a checkpoint's keys and numbers are those of the plain model."""

from types import TracebackType

import torch
from torch import nn


def compiled(module: nn.Module) -> nn.Module:
    """`module` compiled on its first call, and again for each new input shape (the last, smaller batch of an
    epoch; a text batch of another length once, after which torch marks the length dynamic). Its parameters are
    the module's own tensors: the optimizer updates them, and `module.state_dict()` is unchanged."""
    return torch.compile(module)  # type: ignore[return-value]  # an OptimizedModule, typed as a callable


class CompileFailures:
    """The context of a compiled training step: torch.compile compiles lazily, inside the step, and a failure
    there (no C++ compiler for the CPU backend, an operation the backend cannot lower) becomes one paragraph."""

    def __init__(self, model_name: str) -> None:
        self.model_name = model_name

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        from torch._dynamo.exc import TorchDynamoException

        from dlx.errors import DlxError

        if isinstance(error, TorchDynamoException):
            first_line = next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)
            raise DlxError(f"trainer.compile=true: torch.compile could not compile {self.model_name}'s training "
                           f"step: {first_line.strip()} Train without compiling (trainer.compile=false: the same "
                           "model, run eagerly), or fix what torch names (CPU compilation needs a working C++ "
                           "compiler, g++ or clang++, found through $CXX or on the PATH).") from error
