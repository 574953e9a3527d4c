"""The tokenizer of the offline default CODI model: word-level, numbers in 1-3 digit groups.

A word-level vocabulary built with ``tokenizers`` on the problems' questions is small, and
numbers are split into groups of up to three digits from the left, as LLaMA-3's tokenizer
does ("1250" -> "125", "0"); every group "0".."999" (and "000".."099") is always in the
vocabulary, so any number can be written. Whole small numbers as single tokens let the
training give each value an embedding that encodes it (see ``train.init_number_embeddings``);
that learned far faster than one token per digit. Byte-level pre-tokenization and decoding
make decoding exact ("The answer is: 1250" round-trips), which CODI's answer extraction
relies on.

The result is a ``transformers.PreTrainedTokenizerFast`` with ``<s>`` prepended to every
encoded text (as LLaMA tokenizers do) and ``</s>`` as EOS, so the inference code treats it
exactly like a real LLaMA tokenizer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from polydag.core.step_importance.answers import ANSWER_PREFIX

UNK, BOS, EOS = "<unk>", "<s>", "</s>"


def build_tiny_tokenizer(texts: Iterable[str]):
    """Word-level tokenizer trained on ``texts`` plus the answer template, arithmetic signs
    and every 1-3 digit group."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"\d{1,3}"), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.WordLevelTrainer(special_tokens=[UNK, BOS, EOS], min_frequency=1)
    # The answer template, signs and every digit group are always in the vocabulary.
    always = [ANSWER_PREFIX + "0 -.,?", "1+1=2 2-1=1 1*1=1", " ".join(str(i) for i in range(1000)),
              " ".join(f"{i:03d}" for i in range(100))]
    tok.train_from_iterator(list(texts) + always, trainer)
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", special_tokens=[(BOS, bos_id)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, unk_token=UNK)


def load_tokenizer(path: str | Path):
    """A tokenizer saved with ``save_pretrained`` (the tiny one, or a real model's)."""
    from transformers import AutoTokenizer

    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"tokenizer directory not found: {path}")
    return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
