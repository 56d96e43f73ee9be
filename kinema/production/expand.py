"""Prompt expansion: fill in the motion and scene detail a short prompt leaves out.

An `Expander` has a name and `__call__(prompt, seed) -> prompt`. Two ship:

- `ShapesExpander` ("shapes", the default): for prompts in the Shapes-world grammar that
  kinema-tiny was trained on. A shape with no motion gets one (moving left/right/up/down,
  diagonally, bouncing or growing) and a scene with no background gets one, chosen from the seed,
  and the scene is said again in the grammar's canonical form ("a red circle moving left on a
  black background"). A prompt that already says both is returned as it is; free text the grammar
  does not know is left alone.
- `ChatExpander` ("chat"): asks any OpenAI-compatible chat-completions endpoint (a URL such as
  http://127.0.0.1:8080/v1) to rewrite the prompt with motion specifics. Needs httpx (the
  `expand` extra). The API key, if the endpoint wants one, comes from KINEMA_EXPAND_API_KEY.

The negative prompt default lives here too.
"""

from __future__ import annotations

import dataclasses
import os
import random
from typing import Protocol

from kinema.pipeline.text_to_video import MAX_PROMPT_CHARS, GenerationError
from kinema.world import vocab
from kinema.world.captions import canonical_caption
from kinema.world.parse import parse_caption, tokenize
from kinema.world.spec import WorldError

# The default negative prompt: what classifier-free guidance steers away from. Empty for
# kinema-tiny, which was trained with the empty caption as its unconditional input: on 6 quick
# ShapesBench prompts x 2 seeds (mean of colour, shape, direction, background, count) "" scored
# 0.69, "blurry, noisy, flickering, distorted" 0.67 and "standing still" 0.63; a small sample,
# but nothing beat the empty prompt. Override it per call (negative_prompt, --negative).
DEFAULT_NEGATIVE_PROMPT = ""

ADDED_MOTIONS = ("left", "right", "up", "down", "diagonal", "bouncing", "growing")


class ExpansionError(GenerationError):
    """Prompt expansion failed (an endpoint that does not answer, or answers nonsense)."""


class Expander(Protocol):
    name: str

    def __call__(self, prompt: str, seed: int) -> str: ...


class ShapesExpander:
    """Adds a motion to every shape that has none and a background when there is none."""

    name = "shapes"

    def __call__(self, prompt: str, seed: int) -> str:
        try:
            tokens = tokenize(prompt)
            scene = parse_caption(prompt)
        except WorldError:
            return prompt  # not the Shapes grammar: left alone
        moving: list[bool] = []  # per described object (before counts): was a motion said?
        counts: list[int] = []
        count, has_background = 1, False
        for _phrase, slot, value in tokens:
            if slot == "count":
                count = int(value)
            elif slot == "shape":
                moving.append(False)
                counts.append(count)
                count = 1
            elif slot in ("direction", "motion") and moving:
                moving[-1] = True
            elif slot == "background":
                has_background = True
        if all(moving) and has_background:
            return prompt
        rng = random.Random(f"{seed}:{prompt}")
        objects, k = list(scene.objects), 0
        for said, n in zip(moving, counts, strict=True):
            if not said:
                motion = rng.choice(ADDED_MOTIONS)
                for i in range(k, k + n):
                    objects[i] = dataclasses.replace(objects[i], motion=motion)
            k += n
        background = scene.background if has_background else rng.choice(vocab.BACKGROUNDS)
        return canonical_caption(
            dataclasses.replace(scene, objects=tuple(objects), background=background)
        )


SYSTEM_PROMPT = (
    "You rewrite prompts for a text-to-video model. Keep the subject and everything the user "
    "asked for; add concrete motion (what moves, which way, how fast), the camera and the "
    "setting when they are missing. Answer with the rewritten prompt only, one sentence, at "
    "most 60 words."
)


class ChatExpander:
    """Prompt expansion by an OpenAI-compatible chat-completions endpoint."""

    name = "chat"

    def __init__(self, url: str, model: str = "default", api_key: str | None = None,
                 timeout: float = 30.0, system: str = SYSTEM_PROMPT):  # fmt: skip
        if not url.startswith(("http://", "https://")):
            raise ExpansionError(f"expansion endpoint must be an http(s) URL, got {url!r}")
        url = url.rstrip("/")
        self.url = url if url.endswith("/chat/completions") else url + "/chat/completions"
        self.model, self.timeout, self.system = model, timeout, system
        self.api_key = api_key if api_key is not None else os.environ.get("KINEMA_EXPAND_API_KEY")

    def __call__(self, prompt: str, seed: int) -> str:
        try:
            import httpx
        except ImportError:
            raise ExpansionError(
                "prompt expansion through an endpoint needs httpx: pip install 'kinema[expand]'"
            ) from None
        body = {
            "model": self.model,
            "messages": [
                {"role": "system", "content": self.system},
                {"role": "user", "content": prompt},
            ],
            "temperature": 0,
            "seed": seed,
        }
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        try:
            response = httpx.post(self.url, json=body, headers=headers, timeout=self.timeout)
            response.raise_for_status()
            text = response.json()["choices"][0]["message"]["content"]
        except httpx.HTTPStatusError as e:
            raise ExpansionError(
                f"prompt expansion at {self.url} failed: HTTP {e.response.status_code}"
            ) from None
        except httpx.HTTPError as e:
            reason = str(e) or type(e).__name__
            raise ExpansionError(f"prompt expansion at {self.url} failed: {reason}") from None
        except (ValueError, KeyError, IndexError, TypeError):
            raise ExpansionError(
                f"prompt expansion at {self.url} failed: not a chat-completions answer"
            ) from None
        if not isinstance(text, str) or not text.strip():
            raise ExpansionError(f"prompt expansion at {self.url} returned an empty prompt")
        text = " ".join(text.split()).strip("\"'")
        if len(text) > MAX_PROMPT_CHARS:
            raise ExpansionError(
                f"prompt expansion at {self.url} returned {len(text)} characters; the limit is {MAX_PROMPT_CHARS}"
            )
        return text
