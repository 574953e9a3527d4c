"""Word tokenization for the lexical diversity metrics (Distinct-n).

The researchers' Distinct-n came out as 0.0 everywhere because ``nltk.word_tokenize`` needs the
``punkt`` data, which was not installed, and the ``LookupError`` was swallowed. Here:

- the default tokenizer is ``TweetTokenizer(preserve_case=False)``, which needs no downloaded
  data (nor do ``NLTKWordTokenizer``, ``TreebankWordTokenizer`` and ``wordpunct_tokenize``);
- a tokenizer that does need NLTK data (``word_tokenize`` needs ``punkt_tab``) is checked when
  it is chosen, and a missing resource raises :class:`TokenizerResourceError` naming the
  resource and the ``nltk.download(...)`` command. Nothing ever returns 0.0 instead.

Tokenizers are built once per process and reused (TweetTokenizer compiles its regexes on
construction).
"""

from __future__ import annotations

import functools
from typing import Callable

DEFAULT_TOKENIZER = "tweet"

# name -> NLTK data resource it needs (None: needs no data)
TOKENIZER_RESOURCES: dict[str, str | None] = {
    "tweet": None,  # nltk.tokenize.TweetTokenizer(preserve_case=False)
    "nltk_word": None,  # NLTKWordTokenizer on the lower-cased text
    "treebank": None,  # TreebankWordTokenizer on the lower-cased text
    "wordpunct": None,  # wordpunct_tokenize on the lower-cased text
    "word_tokenize": "tokenizers/punkt_tab/english/",  # word_tokenize: needs punkt_tab
}


class TokenizerResourceError(RuntimeError):
    """A configured tokenizer needs NLTK data that is not installed."""


@functools.lru_cache(maxsize=None)
def get_word_tokenizer(name: str = DEFAULT_TOKENIZER) -> Callable[[str], list[str]]:
    """The tokenizer function called ``name`` (see ``TOKENIZER_RESOURCES``), built once.

    All tokenizers lower-case, so "Great" and "great" are the same word for Distinct-n.
    """
    if name not in TOKENIZER_RESOURCES:
        raise ValueError(
            f"unknown word tokenizer {name!r}; choose one of {sorted(TOKENIZER_RESOURCES)} "
            f"(default {DEFAULT_TOKENIZER!r} needs no NLTK data)"
        )
    resource = TOKENIZER_RESOURCES[name]
    if resource is not None:
        _require_nltk_resource(name, resource)

    if name == "tweet":
        from nltk.tokenize import TweetTokenizer

        return TweetTokenizer(preserve_case=False).tokenize
    if name == "nltk_word":
        from nltk.tokenize import NLTKWordTokenizer

        tokenizer = NLTKWordTokenizer()
        return lambda text: tokenizer.tokenize(text.lower())
    if name == "treebank":
        from nltk.tokenize import TreebankWordTokenizer

        tokenizer = TreebankWordTokenizer()
        return lambda text: tokenizer.tokenize(text.lower())
    if name == "wordpunct":
        from nltk.tokenize import wordpunct_tokenize

        return lambda text: wordpunct_tokenize(text.lower())
    # name == "word_tokenize"
    from nltk.tokenize import word_tokenize

    return lambda text: word_tokenize(text.lower())


def _require_nltk_resource(tokenizer_name: str, resource: str) -> None:
    import nltk

    try:
        nltk.data.find(resource)
    except LookupError:
        package = resource.split("/")[1]
        raise TokenizerResourceError(
            f"word tokenizer {tokenizer_name!r} needs the NLTK resource {package!r} "
            f"({resource}), which is not installed in any of the NLTK data paths "
            f"{list(nltk.data.path)}. Fix: run `python -c \"import nltk; "
            f"nltk.download('{package}')\"`, or use tokenizer={DEFAULT_TOKENIZER!r}, which "
            "needs no downloaded data."
        ) from None


def tokenize(text: str, tokenizer: str = DEFAULT_TOKENIZER) -> list[str]:
    """Lower-cased word tokens of ``text`` (default: NLTK TweetTokenizer)."""
    if not isinstance(text, str):
        raise TypeError(f"tokenize expects a str, got {type(text).__name__}: {text!r:.80}")
    return get_word_tokenizer(tokenizer)(text)
