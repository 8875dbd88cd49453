"""dlx.data.tokens: tokenizers learnt from training text, their JSON, padding, and characters per token."""

import subprocess
import sys

import pytest
from tokenizers import pre_tokenizers

from dlx.data.tokens import (
    BOS_ID,
    EOS_ID,
    KINDS,
    PAD_ID,
    SPECIAL_TOKENS,
    byte_level_symbols,
    characters_per_token,
    decode_ids,
    encode_texts,
    refuse_inexact,
    tokenizer_from_json,
    tokenizer_kind,
    train_tokenizer,
    unknown_characters,
)
from dlx.errors import DlxError

TEXTS = ["The quick brown fox jumps over the lazy dog.\nA second line, with ünïcödé.",
         "Pack my box with five dozen liquor jugs!"] * 20


@pytest.mark.parametrize("kind", KINDS)
def test_special_tokens_come_first_and_survive_json(kind):
    tokenizer = tokenizer_from_json(train_tokenizer(TEXTS, kind, 300).to_str(), "test")
    assert [tokenizer.id_to_token(i) for i in range(4)] == SPECIAL_TOKENS
    assert tokenizer_kind(tokenizer) == kind
    assert tokenizer.get_vocab_size() <= 300


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_char_and_bpe_decode_the_training_text_exactly(kind):
    tokenizer = train_tokenizer(TEXTS, kind, 300)
    encoded = encode_texts(tokenizer, TEXTS[:2], max_length=200)
    assert [decode_ids(tokenizer, row) for row in encoded.ids] == TEXTS[:2]


def test_word_keeps_the_most_frequent_words_and_reads_the_others_as_unknown():
    texts = ["the cat sat. The cat ran!", "the dog sat"] * 3
    tokenizer = train_tokenizer(texts, "word", len(SPECIAL_TOKENS) + 3, lowercase=True)
    # "the" 9 times, "cat" and "sat" 6 each, the others 3: the three most frequent (a tie goes by the word)
    assert [tokenizer.id_to_token(i) for i in range(4, 7)] == ["the", "cat", "sat"]
    assert tokenizer.encode("The CAT sat, the cow").tokens == ["the", "cat", "sat", "[UNK]", "the", "[UNK]"]
    assert decode_ids(tokenizer, encode_texts(tokenizer, ["the  cat"], max_length=8).ids[0]) == "the cat"


def test_word_is_refused_where_decoded_text_must_be_the_text():
    refuse_inexact("bpe", "a language model's bits per character count characters")
    with pytest.raises(DlxError, match="dataset.tokenizer=word .* bits per character .* Use dataset.tokenizer=char"):
        refuse_inexact("word", "a language model's bits per character count characters")


def test_rows_are_padded_cut_and_framed():
    tokenizer = train_tokenizer(TEXTS, "char", 100)
    encoded = encode_texts(tokenizer, ["dog", "x" * 50], max_length=8, bos=True, eos=True)
    first, second = encoded.ids
    assert first[0] == BOS_ID and first[4] == EOS_ID and (first[5:] == PAD_ID).all()
    assert decode_ids(tokenizer, first) == "dog"
    assert encoded.truncated == 1 and second[-1] == EOS_ID and PAD_ID not in second


def test_characters_per_token_counts_each_character_once():
    for kind in ("char", "bpe"):
        tokenizer = train_tokenizer(TEXTS, kind, 300)
        counts = characters_per_token(tokenizer)
        ids = tokenizer.encode(TEXTS[0], add_special_tokens=False).ids
        assert counts[ids].sum() == len(TEXTS[0])  # multi-byte characters counted once, not per byte


def test_byte_table_is_the_libraries():
    assert sorted(byte_level_symbols()) == sorted(pre_tokenizers.ByteLevel.alphabet())


def test_characters_outside_a_char_vocabulary_are_named():
    tokenizer = train_tokenizer(TEXTS, "char", 100)
    assert unknown_characters(tokenizer, "fox ☃ and €") == ["€", "☃"]
    assert unknown_characters(train_tokenizer(TEXTS, "bpe", 300), "fox ☃") == []  # every byte is known


def test_bad_settings_are_refused():
    with pytest.raises(DlxError, match="Choose bpe"):
        train_tokenizer(TEXTS, "wordpiece", 100)  # type: ignore[arg-type]
    with pytest.raises(DlxError, match="vocab_size=3 leaves no room"):
        train_tokenizer(TEXTS, "char", 3)
    with pytest.raises(DlxError, match="256 bytes"):
        train_tokenizer(TEXTS, "bpe", 100)
    with pytest.raises(DlxError, match="damaged"):
        tokenizer_from_json("{not json", "x.ckpt")


@pytest.mark.slow
def test_the_same_texts_give_the_same_tokenizer_in_every_process() -> None:
    """Each process seeds its hash maps differently: the library's WordPiece trainer gave a different vocabulary in
    each (seen), which is why dlx does not offer it."""
    script = ("import json; from dlx.data.tokens import train_tokenizer; "
              "texts = ['The quick brown fox jumps over the lazy dog', 'Pack my box with five dozen liquor jugs'] * 9; "
              "print(json.dumps([json.loads(train_tokenizer(texts, kind, 300).to_str()) "
              "for kind in ('char', 'bpe', 'word')], sort_keys=True))")  # the JSON's own order may vary
    outputs = {subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
               for _ in range(4)}
    assert len(outputs) == 1
