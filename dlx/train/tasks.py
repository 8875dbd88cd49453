"""What one training step computes for each kind of model: classification, regression, forecasting, adversarial.

A task's `inputs` maps raw inputs to what its model sees (normalised pixels, or pixels in [-1, 1] for a GAN);
prepare() applies it to whole splits once. train_step() turns a batch into losses, calls `update(optimizer_name,
loss)` (dlx.train.step.Updater: backward + step) once per optimizer, and returns the batch's means as 0-dim
tensors (the loop reads them only when it logs, so there is no host synchronisation per step). eval_batch()
returns sums over the batch, so that counts such as correct predictions stay exact; summarize() turns their means
over a split into the metrics reported (the identity, or a perplexity from a mean loss). training_view() is the
model as train_step() gets it when several processes train it (DistributedDataParallel through `wrap`);
networks() names what the model summary shows; after_validation() adds to the run folder (a GAN's samples).
"""

import dataclasses
import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, cast

import torch
import torch.nn.functional as F
from torch import nn

from dlx.data import DataSplits, Loading
from dlx.data.tokens import BOS_ID, PAD_ID, UNK_ID, decode_ids, tokenizer_from_json, tokenizer_kind
from dlx.errors import DlxError
from dlx.models.decoding import decode
from dlx.models.gan import GAN
from dlx.models.layers import PAD
from dlx.models.seq2seq import EncoderDecoder
from dlx.store.metrics import MetricsLog
from dlx.ui.model_summary import Networks

Update = Callable[[str, torch.Tensor], None]
Sums = dict[str, torch.Tensor]
Wrap = Callable[[nn.Module], nn.Module]


def prepare(data: DataSplits, inputs: Callable[[torch.Tensor], torch.Tensor], device: str,
            loading: Loading = Loading()) -> DataSplits:
    """The data as the model sees it: every split on the device, its inputs mapped by `inputs` (in-memory
    splits once, streamed ones batch by batch: the same numbers, as the mapping is element-wise)."""
    return dataclasses.replace(data, train=data.train.prepared(inputs, device, loading),
                               val=data.val.prepared(inputs, device, loading),
                               test=data.test.prepared(inputs, device, loading))


def pixel_normalizer(data: DataSplits, device: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """Per-batch normalisation with the training split's channel statistics (identity for tabular data)."""
    if not data.is_image:
        return lambda x: x
    mean = torch.tensor(data.pixel_mean, device=device).view(1, -1, 1, 1)
    std = torch.tensor(data.pixel_std, device=device).view(1, -1, 1, 1)
    return lambda x: (x - mean).div_(std)  # one new tensor, not two: whole splits pass through here


def without_trailing_padding(tokens: torch.Tensor) -> torch.Tensor:
    """Token ids (B, T) without the last columns, where every text of the batch has ended: the same outputs (the
    models mask padding out), for less work when texts are shorter than dataset.max_length. Its one host
    synchronisation is one that packing a recurrent network's sequences makes anyway."""
    longest = int((tokens != PAD).sum(dim=1).max())
    return tokens[:, : max(longest, 1)]


class Task(Protocol):
    """What the loop, evaluation and checkpoints ask of a task. Classification, Regression, Forecasting and
    Adversarial are dlx's (make_task chooses among them); a new kind of model adds its own class here, and a case there."""

    @property
    def default_monitor(self) -> tuple[str, str]:
        """(metric, mode) that chooses the best checkpoint unless trainer.monitor says otherwise."""

    @property
    def metric_names(self) -> tuple[str, ...]:
        """The metrics summarize() reports, in the order they are logged (what trainer.monitor.metric may name)."""

    @property
    def num_outputs(self) -> int | None:
        """The outputs the model needs (its num_outputs argument), or None when it decides them itself."""

    @property
    def inputs(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """Raw inputs to what the model sees, applied to whole splits once (dlx.train.tasks.prepare)."""

    def param_groups(self, model: nn.Module) -> dict[str, list[nn.Parameter]]: ...

    def training_view(self, model: nn.Module, wrap: Wrap) -> nn.Module: ...

    def networks(self, model: nn.Module, input_shape: list[int]) -> Networks: ...

    def train_step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, update: Update) -> Sums: ...

    def eval_batch(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_index: int) -> Sums: ...

    def summarize(self, means: dict[str, float]) -> dict[str, float]:
        """A split's metrics from the means over its samples of what eval_batch() sums."""

    def after_validation(self, model: nn.Module, run_dir: Path, step: int, metrics_log: MetricsLog) -> None: ...


class OneNetwork(ABC):
    """What classification, regression and language models share: one network, trained by one optimizer."""

    token_input = False  # whether the model reads token ids (text) rather than numbers

    def param_groups(self, model: nn.Module) -> dict[str, list[nn.Parameter]]:
        return {"model": list(model.parameters())}

    def training_view(self, model: nn.Module, wrap: Wrap) -> nn.Module:
        return wrap(model)

    def networks(self, model: nn.Module, input_shape: list[int]) -> Networks:
        """(name, module, the input size it gets, or an example input) of each network trained, for the model
        summary."""
        if self.token_input:  # ids of [UNK]: a text of input_shape tokens, none of them padding
            return [(type(model).__name__, model, torch.ones((1, *input_shape), dtype=torch.int64))]
        return [(type(model).__name__, model, (1, *input_shape))]

    def after_validation(self, model: nn.Module, run_dir: Path, step: int, metrics_log: MetricsLog) -> None:
        """What the task adds to the run folder after each validation (rank 0): nothing for one network."""
        return  # a deliberate no-op: one network has no samples to draw

    def summarize(self, means: dict[str, float]) -> dict[str, float]:
        return means  # the means are the metrics: loss, accuracy, mean absolute error

    @abstractmethod
    def loss(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The batch's training loss from the model's output: each task defines its own."""

    def model_input(self, x: torch.Tensor) -> torch.Tensor:
        """A batch as the model is given it: as it comes (classifiers of text trim it)."""
        return x

    def train_step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, update: Update) -> Sums:
        loss = self.loss(model(self.model_input(x)), y)
        update("model", loss)
        # The loss only: a training accuracy would cost three more operations per step (a tenth of a
        # small model's step); accuracy is measured on validation.
        return {"loss": loss.detach()}


class Classification(OneNetwork):
    default_monitor = ("val/acc", "max")
    metric_names = ("loss", "acc")

    def __init__(self, criterion: nn.Module, data: DataSplits, device: str) -> None:
        self.criterion = criterion
        self.num_classes = data.num_classes
        if isinstance(criterion, (nn.BCEWithLogitsLoss, nn.MSELoss)) and self.num_classes == 2:
            self.num_outputs = 1  # a binary task with a sigmoid loss: one output, the logit of the positive class
        else:
            self.num_outputs = self.num_classes
        self.inputs = pixel_normalizer(data, device)
        self.token_input = data.tokenizer is not None

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        criterion = self.criterion
        if isinstance(criterion, nn.CrossEntropyLoss):
            return criterion(logits, y)
        if isinstance(criterion, nn.NLLLoss):
            return criterion(F.log_softmax(logits, dim=1), y)
        if isinstance(criterion, (nn.BCEWithLogitsLoss, nn.MSELoss)):
            if self.num_outputs == 1:
                target = y.float()
                output = logits[:, 0]
            else:
                target = F.one_hot(y, self.num_classes).float()
                output = logits
            if isinstance(criterion, nn.MSELoss):  # MSE compares probabilities with the one-hot target
                output = torch.sigmoid(output) if self.num_outputs == 1 else F.softmax(output, dim=1)
            return criterion(output, target)
        return criterion(logits, y)  # a user's own loss on (logits, class indices)

    def model_input(self, x: torch.Tensor) -> torch.Tensor:
        return without_trailing_padding(x) if self.token_input else x

    def predict(self, logits: torch.Tensor) -> torch.Tensor:
        return (logits[:, 0] > 0).long() if self.num_outputs == 1 else logits.argmax(dim=1)

    def eval_batch(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_index: int) -> Sums:
        logits = model(self.model_input(x))
        return {"loss": self.loss(logits, y) * len(y), "acc": (self.predict(logits) == y).sum()}


class Regression(OneNetwork):
    default_monitor = ("val/loss", "min")
    metric_names = ("loss", "mae")

    def __init__(self, criterion: nn.Module, data: DataSplits, device: str) -> None:
        if isinstance(criterion, (nn.CrossEntropyLoss, nn.NLLLoss, nn.BCEWithLogitsLoss)):
            raise DlxError(f"loss {type(criterion).__name__} needs class labels, but this data set is a regression "
                           "task with real-valued targets. Use loss=mse.")
        self.criterion = criterion
        self.num_outputs = data.num_targets
        self.inputs = pixel_normalizer(data, device)

    def loss(self, prediction: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.criterion(prediction, y)

    def eval_batch(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_index: int) -> Sums:
        prediction = model(x)
        return {"loss": self.loss(prediction, y) * len(y), "mae": (prediction - y).abs().mean(dim=1).sum()}


class LanguageModel(OneNetwork):
    """Next-token prediction over blocks of text: the model gives logits (B, T, vocab) for x (B, T), and each
    position's target is the token after it (y, (B, T)). Reported: the loss (cross-entropy in nats per token, with
    no label smoothing), the perplexity exp(loss), and bits per character, which compares models whatever their
    tokenizer: the bits of all target tokens over the characters those tokens stand for."""

    default_monitor = ("val/loss", "min")
    metric_names = ("loss", "perplexity", "bpc")
    num_outputs = None  # the vocabulary decides (the model's vocab_size)
    token_input = True

    def __init__(self, criterion: nn.Module, data: DataSplits, device: str) -> None:
        if not isinstance(criterion, nn.CrossEntropyLoss):
            raise DlxError(f"A language model predicts the next token among {data.vocab_size} and trains on "
                           f"cross-entropy; loss={type(criterion).__name__} does not apply. Use loss=cross_entropy "
                           "(the default).")
        assert data.tokenizer is not None  # dlx.data.corpus gives one
        from dlx.data.tokens import characters_per_token, tokenizer_from_json

        self.criterion = criterion
        self.inputs = lambda x: x
        counts = characters_per_token(tokenizer_from_json(data.tokenizer, "the data set"))
        self.characters = torch.from_numpy(counts).to(device)  # (vocab,) characters each token stands for

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.criterion(logits.flatten(0, 1), y.flatten())

    def eval_batch(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_index: int) -> Sums:
        logits = model(x)
        nats = F.cross_entropy(logits.flatten(0, 1).float(), y.flatten(), reduction="none").view(y.shape)  # (B, T)
        # Every block has as many tokens: the mean over samples of each block's mean is the mean per token.
        return {"loss": nats.mean(dim=1).sum(), "nats": nats.sum(), "characters": self.characters[y].sum()}

    def summarize(self, means: dict[str, float]) -> dict[str, float]:
        loss = means["loss"]
        return {"loss": loss, "perplexity": math.exp(min(loss, 700.0)),  # exp overflows a float past ~709
                "bpc": means["nats"] / max(means["characters"], 1e-9) / math.log(2)}
class Forecasting(OneNetwork):
    """Forecasts of a time series (dlx.data.timeseries): windows (B, window, columns) in, the next `horizon` values
    of each forecast column out, (B, horizon * targets), step 1's targets first. The model trains on
    standardised values; the metrics are in the series' own units: MAE and RMSE (averaged over steps and
    targets), and MASE, each target's absolute error divided by the training rows' seasonal naive error (below 1:
    better than repeating the last season)."""

    default_monitor = ("val/mase", "min")
    metric_names = ("loss", "mae", "rmse", "mase")

    def __init__(self, criterion: nn.Module, data: DataSplits, device: str) -> None:
        from dlx.data.timeseries import target_statistics

        if isinstance(criterion, (nn.CrossEntropyLoss, nn.NLLLoss, nn.BCEWithLogitsLoss)):
            raise DlxError(f"loss {type(criterion).__name__} needs class labels, but a forecaster predicts numbers. "
                           "Use loss=mse (the default of dataset=timeseries).")
        record = data.preprocessing
        if record is None:
            raise DlxError("A forecasting data set must record its series' statistics in DataSplits.preprocessing "
                           "(dlx.data.timeseries.load_timeseries does): the metrics are given in the series' units.")
        self.criterion = criterion
        self.record = record  # the series' columns, statistics and windows (dlx report draws the forecasts)
        horizon = record["horizon"]
        _, std = target_statistics(record)
        self.num_outputs = horizon * len(std)
        # Per output (horizon-major, as the targets are laid out): standardised error -> the series' units, and
        # -> MASE's scaled error.
        self.units = torch.tensor(std, device=device).repeat(horizon)
        self.scaled = (torch.tensor(std, dtype=torch.float64) / torch.tensor(record["scale"], dtype=torch.float64)
                       ).float().to(device).repeat(horizon)
        self.inputs = pixel_normalizer(data, device)  # the identity: the loader standardised the series

    def loss(self, prediction: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.criterion(prediction, y)

    def eval_batch(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_index: int) -> Sums:
        prediction = model(x)
        error = (prediction - y).float()  # (B, horizon * targets), standardised
        in_units = error * self.units
        return {"loss": self.loss(prediction, y) * len(y), "mae": in_units.abs().mean(dim=1).sum(),
                "mse": in_units.square().mean(dim=1).sum(), "mase": (error.abs() * self.scaled).mean(dim=1).sum()}

    def summarize(self, means: dict[str, float]) -> dict[str, float]:
        """RMSE from the mean squared error: the sums over batches stay additive, the root is taken once."""
        return {"loss": means["loss"], "mae": means["mae"], "rmse": math.sqrt(means["mse"]), "mase": means["mase"]}


class Adversarial:
    """The tutorial's minimax game, min_G max_D E[log D(x)] + E[log(1 - D(G(z)))], as two alternating steps.

    The discriminator step maximises the objective (binary cross-entropy: real -> 1, generated -> 0). The
    generator step uses the non-saturating form, maximise log D(G(z)), which has the same fixed point but
    strong gradients early on, when D easily rejects G's samples (Goodfellow et al. 2014, section 3).

    With loss=mse the same two steps train a least-squares GAN (Mao et al. 2017) instead.
    """

    default_monitor = ("val/d_acc", "min")  # the closer the discriminator is to guessing, the better G fools it
    metric_names = ("loss", "g_loss", "d_acc")
    num_outputs = None

    def __init__(self, criterion: nn.Module, data: DataSplits, device: str) -> None:
        if not isinstance(criterion, (nn.BCEWithLogitsLoss, nn.MSELoss)):
            raise DlxError(f"model=gan trains on the minimax objective, which is binary cross-entropy; "
                           f"loss={type(criterion).__name__} does not apply. Use loss=bce (the default for gan), "
                           "or loss=mse for a least-squares GAN.")
        self.criterion = criterion
        self.real_above = 0.5 if isinstance(criterion, nn.MSELoss) else 0.0  # decision threshold of D's output
        # Generated samples end in tanh, so real images are mapped from [0, 1] to the same [-1, 1].
        self.inputs = (lambda x: x * 2 - 1) if data.is_image else (lambda x: x)

    def param_groups(self, model: nn.Module) -> dict[str, list[nn.Parameter]]:
        gan = as_gan(model)
        return {"discriminator": list(gan.discriminator.parameters()),
                "generator": list(gan.generator.parameters())}

    def training_view(self, model: nn.Module, wrap: Wrap) -> nn.Module:
        """Each network wrapped on its own: a step calls the generator and the discriminator separately, and
        DistributedDataParallel synchronises only the gradients of forwards that go through its wrapper."""
        gan = as_gan(model)
        return gan.with_networks(wrap(gan.generator), wrap(gan.discriminator))

    def networks(self, model: nn.Module, input_shape: list[int]) -> Networks:
        gan = as_gan(model)
        return [("generator", gan.generator, (1, gan.noise_dim)),
                ("discriminator", gan.discriminator, (1, math.prod(input_shape)))]

    def losses(self, model: GAN, real: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, ...]:
        fake = model.generate(z)
        real_logits, fake_logits = model(real), model(fake.detach())
        ones, zeros = torch.ones_like(real_logits), torch.zeros_like(fake_logits)
        d_loss = (self.criterion(real_logits, ones) + self.criterion(fake_logits, zeros)) / 2
        d_correct = (real_logits > self.real_above).sum() + (fake_logits <= self.real_above).sum()
        return d_loss, d_correct, fake

    def train_step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, update: Update) -> Sums:
        gan = as_gan(model)
        d_loss, d_correct, fake = self.losses(gan, x, gan.sample_noise(len(x)))
        update("discriminator", d_loss)
        fake_logits = gan(fake)
        g_loss = self.criterion(fake_logits, torch.ones_like(fake_logits))
        update("generator", g_loss)
        return {"loss": d_loss.detach(), "g_loss": g_loss.detach(), "d_acc": d_correct / (2 * len(x))}

    def eval_batch(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_index: int) -> Sums:
        gan = as_gan(model)
        # Fixed noise per batch, so evaluating the same checkpoint twice gives the same numbers.
        z = gan.sample_noise(len(x), torch.Generator().manual_seed(batch_index))
        d_loss, d_correct, fake = self.losses(gan, x, z)
        fake_logits = gan(fake)
        g_loss = self.criterion(fake_logits, torch.ones_like(fake_logits))
        n = len(x)
        return {"loss": d_loss * n, "g_loss": g_loss * n, "d_acc": d_correct / 2}

    def summarize(self, means: dict[str, float]) -> dict[str, float]:
        return means

    def after_validation(self, model: nn.Module, run_dir: Path, step: int, metrics_log: MetricsLog) -> None:
        """A grid of samples from the same noise at every validation: RUN/samples/step_NNNNNNN.png."""
        gan = as_gan(model)
        samples = run_dir / "samples" / f"step_{step:07d}.png"
        self.save_samples(gan, samples, within=run_dir)
        metrics_log.image("samples", samples, step)

    @staticmethod  # also `dlx sample`'s, which has a GAN but no task
    @torch.inference_mode()
    def save_samples(model: GAN, path: Path, count: int = 64, seed: int = 0, within: Path | None = None) -> None:
        """A grid of generated samples as a PNG (images only), from the same noise at every evaluation, written
        atomically (inside the run folder `within`, without a link on the way)."""
        from torchvision.utils import save_image

        from dlx.store.files import atomic_file

        if len(model.input_shape) != 3:
            return
        was_training = model.training
        model.eval()
        images = model.generate(model.sample_noise(count, torch.Generator().manual_seed(seed)))
        model.train(was_training)
        images = (images.float().cpu() + 1) / 2
        scale = max(1, 64 // images.shape[-1])  # draw 8x8 digits large enough to see
        images = F.interpolate(images, scale_factor=scale, mode="nearest")
        with atomic_file(path, within) as file:
            save_image(images, file, format="png", nrow=8, padding=2, pad_value=1.0)


def as_gan(model: nn.Module) -> GAN:
    """The model of an adversarial task: make_task chooses that task for GAN models alone (or the GAN's
    training view, also a GAN)."""
    return cast(GAN, model)



def make_task(criterion: nn.Module, data: DataSplits, device: str, is_gan: bool) -> Task:
    if is_gan:
        return Adversarial(criterion, data, device)
    if data.task == "seq2seq":
        return Seq2Seq(criterion, data, device)
    if data.task == "regression":
        return Regression(criterion, data, device)
    if data.task == "language_model":
        return LanguageModel(criterion, data, device)
    if data.task == "forecasting":
        return Forecasting(criterion, data, device)
    return Classification(criterion, data, device)


class TeacherForcedSummary(nn.Module):
    """An encoder-decoder as the model summary runs it: torchinfo feeds one float tensor (B, source length), read
    here for its shape only; the model runs on [UNK] sources of that length and targets of its longest length."""

    def __init__(self, model: EncoderDecoder) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        src = torch.full(x.shape[:2], UNK_ID, dtype=torch.long, device=x.device)
        tgt_in = torch.full((x.shape[0], self.model.max_target_length - 1), UNK_ID, dtype=torch.long, device=x.device)
        tgt_in[:, 0] = BOS_ID
        return self.model(src, tgt_in)


def as_encoder_decoder(model: nn.Module) -> EncoderDecoder:
    """The model of a seq2seq task: dlx.train.build checks that it is an encoder-decoder before it is built."""
    return cast(EncoderDecoder, model)


class Seq2Seq(OneNetwork):
    """An encoder-decoder trained with teacher forcing: the model reads the source and the target up to each
    position, and is trained by cross-entropy to predict the target's next token ([PAD] positions ignored; label
    smoothing from loss.label_smoothing). Evaluation reports the loss per token and the token accuracy under
    teacher forcing, and, for sequences decoded from the source alone (greedy, or beam search with `beam` > 1),
    the fraction decoded exactly, corpus BLEU and chrF (sacrebleu) and the character error rate (character edits
    over reference characters); see dlx.train.sequence_metrics."""

    default_monitor = ("val/chrf", "max")
    metric_names = ("loss", "token_acc", "exact_match", "bleu", "chrf", "cer")
    num_outputs = None

    def __init__(self, criterion: nn.Module, data: DataSplits, device: str) -> None:
        if not isinstance(criterion, nn.CrossEntropyLoss):
            raise DlxError(f"loss {type(criterion).__name__} does not train an encoder-decoder, which predicts each "
                           "target token among the vocabulary. Use loss=cross_entropy (loss.label_smoothing=0.1 "
                           "smooths its targets).")
        if data.tokenizer is None:
            raise DlxError("The seq2seq data set carries no tokenizer (DataSplits.tokenizer): its ids cannot be "
                           "read back as text. A loader of pairs must return the tokenizer that made them.")
        self.label_smoothing = float(criterion.label_smoothing)
        self.tokenizer = tokenizer_from_json(data.tokenizer, "the data set")
        self.char_level = tokenizer_kind(self.tokenizer) == "char"
        self.beam = 1  # dlx eval beam=N decodes with beam search
        self.inputs = lambda x: x

    def param_groups(self, model: nn.Module) -> dict[str, list[nn.Parameter]]:
        return {"model": list(as_encoder_decoder(model).parameters())}

    def networks(self, model: nn.Module, input_shape: list[int]) -> Networks:
        return [(type(model).__name__, TeacherForcedSummary(as_encoder_decoder(model)), (1, *input_shape))]

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy per target token: logits (B, T - 1, vocab) for the tokens y[:, 1:] (B, T - 1)."""
        return F.cross_entropy(logits.flatten(0, 1).float(), y[:, 1:].flatten(), ignore_index=PAD_ID,
                               label_smoothing=self.label_smoothing)

    def train_step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, update: Update) -> Sums:
        loss = self.loss(model(x, y[:, :-1]), y)
        update("model", loss)
        return {"loss": loss.detach()}

    def eval_batch(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_index: int) -> Sums:
        from dlx.train import sequence_metrics as metrics

        encoder_decoder = as_encoder_decoder(model)
        logits = model(x, y[:, :-1]).float()
        target = y[:, 1:]
        real = target != PAD_ID
        token_loss = F.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=PAD_ID,
                                     label_smoothing=self.label_smoothing, reduction="sum")
        decoded = decode(encoder_decoder, x, y.shape[1] - 1, self.beam)
        hypotheses = [decode_ids(self.tokenizer, row) for row in decoded.tolist()]
        references = [decode_ids(self.tokenizer, row) for row in y.tolist()]
        counts = [sum(h == r for h, r in zip(hypotheses, references)),
                  sum(metrics.edit_distance(h, r) for h, r in zip(hypotheses, references)),
                  sum(len(r) for r in references)]
        bleu = metrics.bleu_statistics(metrics.bleu_metric(self.char_level), hypotheses, references)
        chrf = metrics.chrf_statistics(metrics.chrf_metric(), hypotheses, references)
        on_device = torch.tensor([*counts, *bleu, *chrf], dtype=torch.float32, device=logits.device)
        sums = {"loss": token_loss, "tokens": real.sum(), "token_correct": ((logits.argmax(2) == target) & real).sum(),
                "exact_match": on_device[0], "edits": on_device[1], "reference_chars": on_device[2]}
        sums |= {f"bleu_{i}": value for i, value in enumerate(on_device[3:3 + len(bleu)])}
        sums |= {f"chrf_{i}": value for i, value in enumerate(on_device[3 + len(bleu):])}
        return sums

    def summarize(self, means: dict[str, float]) -> dict[str, float]:
        """The metrics from the means of the batch sums: ratios of them (loss and accuracy per token, edits per
        reference character, BLEU and chrF from their n-gram counts), and the fraction decoded exactly."""
        from dlx.train import sequence_metrics as metrics

        bleu = [value for name, value in means.items() if name.startswith("bleu_")]
        chrf = [value for name, value in means.items() if name.startswith("chrf_")]
        tokens = max(means["tokens"], 1e-12)
        return {"loss": means["loss"] / tokens, "token_acc": means["token_correct"] / tokens,
                "exact_match": means["exact_match"],
                "bleu": metrics.bleu_score(bleu),
                "chrf": metrics.chrf_score(metrics.chrf_metric(), chrf),
                "cer": means["edits"] / max(means["reference_chars"], 1e-12)}

