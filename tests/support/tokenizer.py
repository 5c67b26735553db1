"""A tokenizer that counts words: dataset building without a model (the token filter counts whitespace words)."""

from __future__ import annotations


class WhitespaceTokenizer:
    name_or_path = "whitespace"
    eos_token = "<eos>"

    def apply_chat_template(self, messages, add_generation_prompt: bool, tokenize: bool) -> str:
        assert add_generation_prompt and not tokenize
        return "".join(f"<{m['role']}> {m['content']} " for m in messages) + "<assistant> "

    def __call__(self, texts: list[str], add_special_tokens: bool) -> dict[str, list[list[int]]]:
        return {"input_ids": [list(range(len(t.split()))) for t in texts]}
