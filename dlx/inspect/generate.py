"""`dlx sample` for a language model: text continued from a prompt, one token at a time.

Each next token is drawn from the model's distribution over the vocabulary given the tokens so far (at most the
block size it was trained on, the most recent), sharpened or flattened by the temperature (logits / T; 0 takes
the most likely token) and cut to the k most likely tokens (top-k). The draws come from a generator seeded with
`seed`: the same checkpoint, prompt, settings and seed give the same text.
"""

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from dlx.data.tokens import decode_ids, tokenizer_from_json, unknown_characters
from dlx.errors import DlxError
from dlx.inspect.rebuild import Rebuilt

START_OF_TEXT = "\n"  # what an empty prompt stands for: the start of a line


@dataclass
class Sampling:
    prompt: str
    max_tokens: int
    temperature: float
    top_k: int | None
    seed: int


def check_sampling(sampling: Sampling) -> None:
    if sampling.max_tokens < 1:
        raise DlxError(f"--max-tokens {sampling.max_tokens}: give the number of tokens to generate, 1 or more.")
    if sampling.temperature < 0:
        raise DlxError(f"--temperature {sampling.temperature}: give 0 (always the most likely token) or more (1 samples "
                       "the model's own distribution; below 1 is more conservative, above 1 more varied).")
    if sampling.top_k is not None and sampling.top_k < 1:
        raise DlxError(f"--top-k {sampling.top_k}: give the number of most likely tokens to draw from, 1 or more.")


def continue_text(rebuilt: Rebuilt, sampling: Sampling, count: int) -> list[str]:
    """`count` continuations of the prompt (each the prompt and what follows it), drawn one after the other from
    one seeded generator."""
    check_sampling(sampling)
    data = rebuilt.data("sample")
    tokenizer = tokenizer_from_json(data["tokenizer"], str(rebuilt.path))
    prompt = sampling.prompt or START_OF_TEXT
    unknown = unknown_characters(tokenizer, prompt)
    if unknown:
        raise DlxError(f"The prompt holds character(s) the model's vocabulary lacks: {' '.join(map(repr, unknown))}. "
                       f"{rebuilt.path} was trained on text without them (a character tokenizer knows only the "
                       "characters of its training text). Leave them out of --prompt.")
    ids = tokenizer.encode(prompt, add_special_tokens=False).ids
    if not ids:
        raise DlxError(f"The prompt {prompt!r} gives no tokens. Give some text with --prompt.")
    generator = torch.Generator().manual_seed(sampling.seed)
    (block_size,) = data["input_shape"]
    texts = []
    for _ in range(count):
        tokens = generate(rebuilt.model, ids, sampling, block_size, generator)
        texts.append((sampling.prompt or "") + decode_ids(tokenizer, tokens[len(ids):]))
    return texts


@torch.inference_mode()
def generate(model: nn.Module, prompt: list[int], sampling: Sampling, block_size: int,
             generator: torch.Generator) -> list[int]:
    """The prompt's ids followed by max_tokens drawn ones."""
    tokens = torch.tensor([prompt], dtype=torch.int64)
    for _ in range(sampling.max_tokens):
        logits = model(tokens[:, -block_size:])[0, -1].float()  # (vocab,) scores of the next token
        tokens = torch.cat([tokens, next_token(logits, sampling, generator).view(1, 1)], dim=1)
    return tokens[0].tolist()


def next_token(logits: torch.Tensor, sampling: Sampling, generator: torch.Generator) -> torch.Tensor:
    if sampling.temperature == 0:
        return logits.argmax()
    if sampling.top_k is not None and sampling.top_k < len(logits):
        threshold = logits.topk(sampling.top_k).values[-1]
        logits = logits.masked_fill(logits < threshold, float("-inf"))
    probabilities = torch.softmax(logits / sampling.temperature, dim=0)
    return torch.multinomial(probabilities, 1, generator=generator)[0]


def write_texts(texts: list[str], out: Path) -> None:
    from dlx.store.files import write_text_atomically

    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(out, "\n\n".join(texts) + "\n")
