"""The extractive reader as an in-process `ChatBackend` (the interface of s3core.generation.base)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from s3core.generation.base import GenerationParams, GeneratorError, Message
from s3core.generation.extractive_reader import ExtractiveReader


class ReaderChatBackend:
    """Answers chats with an extractive reader folder; GenerationParams do not apply (it extracts, greedily)."""

    name = "reader"

    def __init__(self, model_path: str, device: str = "cpu"):
        try:
            self.reader = ExtractiveReader(model_path, device=device)
        except (OSError, ValueError) as exc:
            raise GeneratorError(f"could not load the reader at {model_path}: {exc}") from exc

    async def health(self) -> None:
        return None

    async def generate(self, conversations: Sequence[Sequence[Message]], params: GenerationParams) -> list[str]:
        return await asyncio.to_thread(self.reader.answer_chats, conversations)
