"""The safety policy: what a prompt may ask for and which frame checks run on the output.

A policy is a frozen dataclass, built in (`DEFAULT_POLICY`) or read from a YAML or JSON file:

    name: studio
    categories:                 # category -> words or phrases that refuse a prompt
      violence: [gore, beheading]
      weapons: [gun, rifle]
    allow: [water gun]          # phrases taken out of the prompt before matching
    prompt_classifiers: [keywords]
    frame_classifiers: [heuristic]
    clip_classifiers: [flashes, blank]
    colour_signatures:          # for the heuristic frame classifier
      - {name: brand red, rgb: [230, 40, 40], tolerance: 12, max_fraction: 0.5}

Prompt classifiers are pluggable (`PromptClassifier`: a name and `__call__(prompt)` returning a
reason or None); the built-in one, "keywords", matches whole words and phrases of the policy's
categories, case-insensitively. It is a block list, not an understanding of the prompt: it
refuses "a gory scene" only if "gory" is listed, and cannot see intent in innocent words.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import yaml

from kinema.pipeline.text_to_video import GenerationError


class PolicyError(GenerationError):
    """A policy file or classifier name that cannot be used."""


class PromptRefused(GenerationError):
    """A prompt the safety policy refuses; nothing was generated."""

    def __init__(self, classifier: str, reason: str):
        self.classifier, self.reason = classifier, reason
        super().__init__(f"prompt refused by {classifier}: {reason}; nothing was generated")


@dataclass(frozen=True)
class ColourSignature:
    """Frames in which more than `max_fraction` of the pixels lie within `tolerance` (per RGB
    channel) of `rgb` are flagged by the heuristic frame classifier."""

    name: str
    rgb: tuple[int, int, int]
    tolerance: int = 12
    max_fraction: float = 0.5


# A short built-in list, meant as a floor and an example, not as moderation.
DEFAULT_CATEGORIES: dict[str, tuple[str, ...]] = {
    "sexual": ("nude", "naked", "nsfw", "porn", "pornographic", "sexual", "explicit sex"),
    "violence": ("gore", "gory", "beheading", "decapitated", "mutilated", "massacre", "torture"),
    "self-harm": ("suicide", "self-harm", "self harm"),
    "hate": ("racist", "ethnic cleansing", "genocide"),
}


@dataclass(frozen=True)
class SafetyPolicy:
    name: str = "default"
    categories: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: dict(DEFAULT_CATEGORIES)
    )
    allow: tuple[str, ...] = ()
    prompt_classifiers: tuple[str, ...] = ("keywords",)
    frame_classifiers: tuple[str, ...] = ("heuristic",)
    clip_classifiers: tuple[str, ...] = ("flashes", "blank")
    colour_signatures: tuple[ColourSignature, ...] = ()
    uniform_std: float = 0.75  # a clip whose frames' channels all vary less is blank/corrupt


DEFAULT_POLICY = SafetyPolicy()

_KEYS = {"name", "categories", "allow", "prompt_classifiers", "frame_classifiers",
         "clip_classifiers", "colour_signatures", "uniform_std"}  # fmt: skip


def load_policy(path: str | Path) -> SafetyPolicy:
    """Read a policy from YAML or JSON; every problem is a PolicyError naming the file."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise PolicyError(f"policy file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise PolicyError(f"cannot read policy file {path}: {e}") from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        reason = str(e).splitlines()[0]
        raise PolicyError(
            f"policy file {path} is not valid {path.suffix[1:] or 'YAML'}: {reason}"
        ) from None
    if not isinstance(data, dict):
        raise PolicyError(f"policy file {path} must hold a mapping of settings")
    unknown = set(data) - _KEYS
    if unknown:
        raise PolicyError(
            f"policy file {path}: unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(_KEYS))}"
        )
    try:
        policy = _from_dict(data, path.stem)
    except (TypeError, ValueError) as e:
        raise PolicyError(f"policy file {path}: {e}") from None
    check_names(policy, f"policy file {path}")
    return policy


def _words(value, what: str) -> tuple[str, ...]:
    if isinstance(value, str) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ValueError(f"{what} must be a list of words or phrases")
    return tuple(v.strip().lower() for v in value)


def _from_dict(data: dict, default_name: str) -> SafetyPolicy:
    categories = data.get("categories", DEFAULT_CATEGORIES)
    if not isinstance(categories, dict):
        raise ValueError("categories must map a category name to a list of words")
    signatures = []
    for s in data.get("colour_signatures", []):
        if not isinstance(s, dict) or "rgb" not in s:
            raise ValueError("each colour signature needs at least rgb: [R, G, B]")
        rgb = tuple(int(c) for c in s["rgb"])
        if len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb):
            raise ValueError(f"colour signature rgb must be three values 0..255, got {s['rgb']}")
        sig = ColourSignature(str(s.get("name", "signature")), rgb, int(s.get("tolerance", 12)),
                              float(s.get("max_fraction", 0.5)))  # fmt: skip
        if not 0 < sig.max_fraction <= 1:
            raise ValueError(
                f"colour signature max_fraction must be in (0, 1], got {sig.max_fraction}"
            )
        signatures.append(sig)
    return SafetyPolicy(
        name=str(data.get("name", default_name)),
        categories={str(k): _words(v, f"category {k!r}") for k, v in categories.items()},
        allow=_words(data.get("allow", []), "allow"),
        prompt_classifiers=_words(
            data.get("prompt_classifiers", ["keywords"]), "prompt_classifiers"
        ),
        frame_classifiers=_words(data.get("frame_classifiers", ["heuristic"]), "frame_classifiers"),
        clip_classifiers=_words(
            data.get("clip_classifiers", ["flashes", "blank"]), "clip_classifiers"
        ),
        colour_signatures=tuple(signatures),
        uniform_std=float(data.get("uniform_std", 0.75)),
    )


# ----------------------------------------------------------------------------- prompt classifiers


class PromptClassifier(Protocol):
    name: str

    def __call__(self, prompt: str) -> str | None:
        """A reason to refuse the prompt, or None."""
        ...


def _phrase_pattern(phrase: str) -> re.Pattern:
    words = [re.escape(w) for w in phrase.split()]
    return re.compile(r"(?<![a-z0-9])" + r"[\s\-]+".join(words) + r"(?![a-z0-9])")


class KeywordClassifier:
    """Refuses a prompt that contains a listed word or phrase (whole words, any case) once the
    allowed phrases are taken out."""

    name = "keywords"

    def __init__(self, policy: SafetyPolicy = DEFAULT_POLICY):
        self.policy = policy
        self._allow = [_phrase_pattern(p) for p in policy.allow]
        self._blocks = [
            (cat, w, _phrase_pattern(w)) for cat, ws in policy.categories.items() for w in ws
        ]

    def __call__(self, prompt: str) -> str | None:
        text = prompt.lower()
        for pattern in self._allow:
            text = pattern.sub(" ", text)
        for category, word, pattern in self._blocks:
            if pattern.search(text):
                return f"category {category!r} of policy {self.policy.name!r} (matched {word!r})"
        return None


PROMPT_CLASSIFIERS: dict[str, Callable[[SafetyPolicy], PromptClassifier]] = {
    "keywords": KeywordClassifier,
}


def check_names(policy: SafetyPolicy, where: str = "policy") -> None:
    """Every classifier a policy names must exist."""
    from kinema.production.safety import CLIP_CLASSIFIERS, FRAME_CLASSIFIERS

    for kind, names, known in (
        ("prompt", policy.prompt_classifiers, PROMPT_CLASSIFIERS),
        ("frame", policy.frame_classifiers, FRAME_CLASSIFIERS),
        ("clip", policy.clip_classifiers, CLIP_CLASSIFIERS),
    ):
        for name in names:
            if name not in known:
                raise PolicyError(
                    f"{where}: unknown {kind} classifier {name!r}; known: {', '.join(known)}"
                )


def prompt_classifiers(policy: SafetyPolicy) -> list[PromptClassifier]:
    check_names(policy)
    return [PROMPT_CLASSIFIERS[n](policy) for n in policy.prompt_classifiers]


def check_prompt_safety(prompt: str, classifiers: list[PromptClassifier]) -> None:
    """Raise PromptRefused with the first classifier's reason."""
    for classifier in classifiers:
        reason = classifier(prompt)
        if reason:
            raise PromptRefused(classifier.name, reason)
