"""An offline, deterministic model for Inspect: every answer is a function of the prompt and the
sample's seed, and it reports its own token usage, so Inspect never counts tokens with tiktoken
(whose encoding is downloaded on first use). For trying the task and for tests; not a model."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from inspect_ai.model import ChatMessage, GenerateConfig, ModelAPI, ModelOutput, ModelUsage
from inspect_ai.tool import ToolChoice, ToolInfo


class InstantModel(ModelAPI):
    def __init__(self, model_name: str, base_url: str | None = None, api_key: str | None = None,
                 config: GenerateConfig | None = None, **model_args: Any) -> None:
        super().__init__(model_name=model_name, base_url=base_url, api_key=api_key, config=config or GenerateConfig())

    async def generate(self, input: list[ChatMessage], tools: list[ToolInfo], tool_choice: ToolChoice,
                       config: GenerateConfig) -> ModelOutput:
        text = json.dumps([m.text for m in input] + [config.seed, self.model_name])
        h = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
        answer = str(h % 6)
        out = ModelOutput.from_content(model=self.model_name, content=answer)
        prompt_tokens = sum(len(m.text.split()) for m in input)
        out.usage = ModelUsage(input_tokens=prompt_tokens, output_tokens=1, total_tokens=prompt_tokens + 1)
        return out
