"""Text to token ids and back, with Hugging Face `tokenizers`: a vocabulary learnt from the training split alone,
kept as the library's own JSON (never a pickle) in every checkpoint, so that `dlx predict`, `dlx sample` and
`dlx eval` read new text exactly as training did.

Three kinds (`dataset.tokenizer`):
- `char`: one token per character (the characters of the training text, most frequent first); decoding gives
  the text back exactly. The natural choice for language models of small corpora and for generated tasks.
- `bpe`: byte-level byte-pair encoding, GPT-2's scheme: merges learnt up to `vocab_size`, any text encodable
  (every byte is in the alphabet), decoding exact.
- `word`: one token per word or run of punctuation (the library's Whitespace pre-tokenizer),
  the most frequent words of the training text, the others [UNK]. What a bag of words or TF-IDF reads, and on a
  small training set the better start for a classifier: each token is a unit of meaning, learnt from every text it
  appears in. Decoding joins the words with spaces, so it does not give the text back exactly: classification
  only (`refuse_inexact`).

All three learn the same vocabulary from the same text in every process, which a run's resumption, its evaluation and
the ranks of a data-parallel run rely on, since each learns it from the data again (tests/unit/test_data_tokens.py
checks it). The library's WordPiece trainer does not: it numbers its "##" alphabet in the order of a hash map,
which changes from process to process and with it which of two equally frequent merges is made, so dlx does not
offer it.

Every vocabulary starts with the same special tokens, so that padding is id 0 everywhere (the models' masks rely
on it): [PAD] 0, [UNK] 1, [BOS] 2 (begin), [EOS] 3 (end).
"""

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from dlx.errors import DlxError

if TYPE_CHECKING:
    from tokenizers import Tokenizer, normalizers

TokenizerKind = Literal["char", "bpe", "word"]
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[BOS]", "[EOS]"]
PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
KINDS: tuple[TokenizerKind, ...] = ("char", "bpe", "word")


def train_tokenizer(texts: Sequence[str], kind: TokenizerKind, vocab_size: int, lowercase: bool = False) -> "Tokenizer":
    """A tokenizer of `kind` learnt from `texts` (the training split only), of at most `vocab_size` tokens
    counting the four special ones."""
    if kind not in KINDS:
        raise DlxError(f'dataset.tokenizer="{kind}" is not a tokenizer dlx knows. Choose bpe (byte-level byte-pair '
                       "encoding, GPT-2's sub-words), char (one token per character) or word (one token per word).")
    if vocab_size < len(SPECIAL_TOKENS) + 1:
        raise DlxError(f"dataset.vocab_size={vocab_size} leaves no room for text beside the {len(SPECIAL_TOKENS)} "
                       f"special tokens ({', '.join(SPECIAL_TOKENS)}). Give a larger vocab_size (e.g. 8000).")
    if kind == "bpe" and vocab_size < 256 + len(SPECIAL_TOKENS):
        raise DlxError(f"dataset.vocab_size={vocab_size} is smaller than byte-level BPE's alphabet: its 256 bytes "
                       f"and {len(SPECIAL_TOKENS)} special tokens come first. Give vocab_size 512 or more (merges "
                       "are learnt on top of the bytes), or dataset.tokenizer=char.")
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    if kind == "char":
        counts = Counter(char for text in texts for char in (text.lower() if lowercase else text))
        kept = [char for char, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0]))]
        vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS + kept[: vocab_size - len(SPECIAL_TOKENS)])}
        tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
        tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")  # newlines too
        tokenizer.decoder = decoders.Fuse()
    elif kind == "word":
        words, normalize = pre_tokenizers.Whitespace(), normalizer(lowercase)
        counts = Counter(word for text in texts for word, _ in words.pre_tokenize_str(normalize.normalize_str(text)))
        kept = [word for word, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0]))]
        vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS + kept[: vocab_size - len(SPECIAL_TOKENS)])}
        tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
        tokenizer.pre_tokenizer = words
    else:
        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        tokenizer.train_from_iterator(texts, trainer=trainer)
    tokenizer.normalizer = normalizer(lowercase)
    return tokenizer


def normalizer(lowercase: bool) -> "normalizers.Normalizer":
    from tokenizers import normalizers

    return normalizers.Sequence([normalizers.NFC(), *([normalizers.Lowercase()] if lowercase else [])])


def refuse_inexact(kind: TokenizerKind, task: str) -> None:
    """Stop a task that needs decoded text to be the text itself (`task` says why) from using the word tokenizer."""
    if kind == "word":
        raise DlxError(f"dataset.tokenizer=word reads text as words and decodes it with a space between every two "
                       f"tokens, not as it was written, and {task}. Use dataset.tokenizer=char (one token per "
                       "character) or bpe (byte-level sub-words), which both give the text back exactly; word is "
                       "for dataset=text, the classification of texts.")


def tokenizer_from_json(text: str, source: str) -> "Tokenizer":
    """The tokenizer a checkpoint or a token cache keeps as JSON (`source` names that file in errors)."""
    from tokenizers import Tokenizer

    try:
        tokenizer = Tokenizer.from_str(text)
    except Exception as err:  # the library raises plain Exceptions on malformed JSON
        raise DlxError(f"{source} holds a tokenizer that cannot be read ({err}): the file is damaged or was altered. "
                       "Use another checkpoint, or train again.") from err
    specials = [tokenizer.id_to_token(index) for index in range(len(SPECIAL_TOKENS))]
    if specials != SPECIAL_TOKENS:
        raise DlxError(f"{source} holds a tokenizer whose first tokens are {specials}, not dlx's special tokens "
                       f"{SPECIAL_TOKENS}: it was not written by dlx, or was altered. Use another checkpoint.")
    return tokenizer


def tokenizer_kind(tokenizer: "Tokenizer") -> TokenizerKind:
    description = json.loads(tokenizer.to_str())
    if description["model"]["type"] == "BPE":
        return "bpe"
    return "word" if description["pre_tokenizer"]["type"] == "Whitespace" else "char"


@dataclass
class Encoded:
    ids: np.ndarray  # (N, max_length) int64 token ids, each row padded with PAD_ID after its tokens
    truncated: int  # how many texts had more tokens than max_length and were cut


def encode_texts(tokenizer: "Tokenizer", texts: Sequence[str], max_length: int, bos: bool = False,
                 eos: bool = False) -> Encoded:
    """Each text's token ids in a row of `max_length`, left-aligned, padded with [PAD]; [BOS] before and [EOS] after
    the tokens when asked (a decoder's targets), counted in max_length. Longer texts are cut at the end."""
    room = max_length - bos - eos
    if room < 1:
        raise DlxError(f"dataset.max_length={max_length} leaves no room for tokens. Give 16 or more.")
    ids = np.full((len(texts), max_length), PAD_ID, dtype=np.int64)
    truncated = 0
    for row, encoding in enumerate(tokenizer.encode_batch(list(texts), add_special_tokens=False)):
        tokens = encoding.ids
        if len(tokens) > room:
            truncated += 1
            tokens = tokens[:room]
        tokens = [BOS_ID] * bos + tokens + [EOS_ID] * eos
        ids[row, : len(tokens)] = tokens
    return Encoded(ids, truncated)


def encode_corpus(tokenizer: "Tokenizer", pieces: Iterable[str]) -> Iterable[np.ndarray]:
    """A long text's token ids, piece by piece (the pieces end at line ends, where no token spans them), as
    arrays of the smallest unsigned type that holds the vocabulary."""
    dtype = token_dtype(tokenizer.get_vocab_size())
    for piece in pieces:
        yield np.asarray(tokenizer.encode(piece, add_special_tokens=False).ids, dtype=dtype)


def token_dtype(vocab_size: int) -> type:
    return np.uint16 if vocab_size <= 2**16 else np.uint32


def decode_ids(tokenizer: "Tokenizer", ids: Iterable[int]) -> str:
    """The text of a sequence of ids, up to its first [EOS], without [PAD] and [BOS]."""
    kept = []
    for index in ids:
        if index == EOS_ID:
            break
        if index not in (PAD_ID, BOS_ID):
            kept.append(int(index))
    return tokenizer.decode(kept, skip_special_tokens=False)


def characters_per_token(tokenizer: "Tokenizer") -> np.ndarray:
    """(vocab,) how many characters of text each token stands for, so that a language model's loss per token
    converts into bits per character. A byte-level BPE token is a run of bytes (its string maps each byte to one
    symbol): a character is counted where its first byte is, a UTF-8 byte that is not a continuation byte."""
    size = tokenizer.get_vocab_size()
    counts = np.zeros(size, dtype=np.float32)
    if tokenizer_kind(tokenizer) == "bpe":
        symbol_to_byte = {symbol: index for index, symbol in enumerate(byte_level_symbols())}
        for index in range(len(SPECIAL_TOKENS), size):
            token = tokenizer.id_to_token(index) or ""
            counts[index] = len([symbol for symbol in token if symbol_to_byte.get(symbol, 0) & 0xC0 != 0x80])
    else:
        for index in range(len(SPECIAL_TOKENS), size):
            counts[index] = len(tokenizer.decode([index]))
    return counts


def byte_level_symbols() -> list[str]:
    """The 256 symbols byte-level BPE writes for the bytes 0..255, in byte order (GPT-2's table: printable
    Latin-1 bytes stand for themselves, the others for the code points from 256 on)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    symbols, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            symbols[byte] = chr(byte)
        else:
            symbols[byte] = chr(256 + extra)
            extra += 1
    return [symbols[byte] for byte in range(256)]


def unknown_characters(tokenizer: "Tokenizer", text: str) -> list[str]:
    """The characters of `text` that the tokenizer reads as [UNK] (a char vocabulary lacks them)."""
    encoding = tokenizer.encode(text, add_special_tokens=False)
    return sorted({text[start:end] for index, (start, end) in zip(encoding.ids, encoding.offsets) if index == UNK_ID})
