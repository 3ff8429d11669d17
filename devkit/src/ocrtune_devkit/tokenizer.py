"""A byte-level BPE tokenizer, hand-made so that each character of the charset is one token.

A random-weight model learns a line of text in a few dozen steps only if each
character is a single token; real Qwen2 vocabularies are 150k tokens, far too big
for a 1 M-parameter test model. Byte-level keeps every other string encodable.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

QWEN2_SPLIT_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map (transformers 5 no longer exports it)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in chars), strict=True))


def build_vocab_and_merges(characters: str) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """256 byte tokens, then for each multi-byte character the merges that build it left to right."""
    byte_char = bytes_to_unicode()
    vocab: dict[str, int] = {byte_char[b]: i for i, b in enumerate(sorted(byte_char))}
    merges: list[tuple[str, str]] = []
    for ch in dict.fromkeys(characters):
        pieces = [byte_char[b] for b in ch.encode("utf-8")]
        left = pieces[0]
        for right in pieces[1:]:
            merged = left + right
            if merged not in vocab:
                vocab[merged] = len(vocab)
                merges.append((left, right))
            left = merged
    return vocab, merges


def build_tokenizer(characters: str, special_tokens: list[str], size: int | None = None) -> Tokenizer:
    """``size``: pad the vocabulary to this many ids (special tokens included) for a real-size embedding.

    The padding tokens are plain ASCII that no merge produces, so text never encodes to them,
    yet a random model that samples one still decodes it (to ``unusedN``).
    """
    vocab, merges = build_vocab_and_merges(characters)
    if size is not None:
        fillers = size - len(special_tokens) - len(vocab)
        if fillers < 0:
            raise ValueError(f"vocabulary size {size} < {len(vocab) + len(special_tokens)} tokens")
        vocab.update({f"unused{i}": len(vocab) + i for i in range(fillers)})
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(special_tokens)
    return tokenizer


def write_vocab_files(tokenizer: Tokenizer, folder: Path) -> None:
    """Also write vocab.json / merges.txt, which slow tokenizer classes and some tools expect."""
    model = json.loads(tokenizer.to_str())["model"]
    (folder / "vocab.json").write_text(json.dumps(model["vocab"], ensure_ascii=False))
    merges = model["merges"]
    lines = [" ".join(m) if isinstance(m, list) else m for m in merges]
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(lines) + "\n")
