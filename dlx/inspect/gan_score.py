"""A GAN's quality as numbers, judged by a classifier that dlx trained on the same data set:
`dlx eval GAN.ckpt classifier=CLASSIFIER.ckpt`.

- classifier_score: the Inception Score (Salimans et al. 2016) with that classifier in Inception's place,
  exp(E_x KL(p(y|x) || p(y))). It is high when each sample is confidently one class (sharp p(y|x)) and the
  samples cover the classes evenly (flat p(y)); at most the number of classes.
- class_entropy: the entropy of the predicted classes' distribution over the samples, divided by log(classes):
  1 when every class is generated equally often, 0 when all samples are one class (mode collapse).
- top_class_fraction: the share of samples in the most generated class.

Two GAN runs on one data set compare with the same classifier and the same number of samples (the noise is
drawn from a fixed seed, so a checkpoint always gets the same numbers).
"""

import math
from pathlib import Path

import torch

from dlx.errors import DlxError
from dlx.inspect.rebuild import raw_input_model, rebuild_model

SAMPLES = 10_000
BATCH = 500


@torch.inference_mode()
def classifier_score(gan_path: Path, classifier_path: Path, allow: list[str], config_dirs: list[Path],
                     samples: int = SAMPLES, seed: int = 0) -> dict[str, float]:
    gan = rebuild_model(gan_path, allow, config_dirs)
    classifier = rebuild_model(classifier_path, allow, config_dirs)
    if not gan.is_gan:
        raise DlxError(f"classifier=... scores a GAN, but {gan_path} is a {type(gan.model).__name__} checkpoint. "
                       "Evaluate a GAN checkpoint with it (model=gan).")
    if classifier.is_gan or classifier.data("dlx eval classifier=").get("task") != "classification":
        raise DlxError(f"classifier={classifier_path} is not a classifier checkpoint. Train one on the GAN's data "
                       "set (e.g. dlx train model=cnn dataset=SAME) and pass its best.ckpt.")
    generate = raw_input_model(gan, "dlx eval")
    classify = raw_input_model(classifier, "dlx eval classifier=")
    shape = list(gan.gan.input_shape)
    expected = classifier.data("dlx eval classifier=")["input_shape"]
    if shape != list(expected):
        raise DlxError(f"The GAN makes images of shape {shape} but the classifier takes {list(expected)}: score a "
                       "GAN with a classifier trained on the same data set.")
    noise = torch.Generator().manual_seed(seed)
    probabilities = []
    for begin in range(0, samples, BATCH):
        z = gan.gan.sample_noise(min(BATCH, samples - begin), noise)
        probabilities.append(torch.softmax(classify(generate(z)).float(), dim=1))
    return scores(torch.cat(probabilities))


def scores(p: torch.Tensor) -> dict[str, float]:
    """The score of class probabilities p (samples x classes); see the module's docstring."""
    classes = p.shape[1]
    marginal = p.mean(dim=0)
    kl = (p * (p.clamp_min(1e-12).log() - marginal.clamp_min(1e-12).log())).sum(dim=1)
    counts = torch.bincount(p.argmax(dim=1), minlength=classes).double()
    share = counts / counts.sum()
    entropy = -(share[share > 0] * share[share > 0].log()).sum().item()
    return {"classifier_score": math.exp(kl.mean().item()), "class_entropy": entropy / math.log(classes),
            "top_class_fraction": share.max().item(), "samples": float(len(p))}
