"""Multi-shot generation: a scene bible, a list of shots, one video cut together.

A shot list file (YAML or JSON) holds a scene bible (characters and setting) and the shots:

    bible:
      characters:
        hero: a small red circle
      setting: on a navy background
    shots:
      - name: opening
        prompt: the hero moving left
        seconds: 1

`shot_prompt` composes each shot's prompt with the bible ("the hero moving left" -> "a small red
circle moving left on a navy background"), `generate_shots` generates every shot and joins them
with hard cuts. `load_shot_list` reports every problem of a file with its line and field;
`plan_shots` splits one prompt into shots with a few plain rules (see its docstring).
"""

from __future__ import annotations

import bisect
import json
import math
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from json.decoder import scanstring
from pathlib import Path

import numpy as np
import yaml

from kinema.api import Pipeline, Video
from kinema.pipeline.text_to_video import (
    MAX_PROMPT_CHARS,
    GenerationSettings,
    check_prompt,
    check_settings,
    sampler_overrides,
)
from kinema.world.captions import SHAPE_WORDS

MAX_SHOT_SECONDS = 120.0
DEFAULT_SHOT_SECONDS = 2.0
DEFAULT_FPS = 8.0
DEFAULT_SIZE = (64, 64)
TOP_KEYS = ("bible", "shots", "fps", "size")
BIBLE_KEYS = ("characters", "setting", "style")
SHOT_KEYS = ("name", "prompt", "seconds", "seed", "characters", "setting")
SUFFIXES = (".yaml", ".yml", ".json")
_JSON_ATOM = re.compile(r"[^\s,\]}]+")


@dataclass(frozen=True)
class SceneBible:
    """What every shot shares: characters by name -> description, the setting, a style."""

    characters: dict[str, str] = field(default_factory=dict)
    setting: str = ""  # e.g. "on a navy background"; appended to shots that name none
    style: str = ""  # e.g. "film grain"; appended to every shot after a comma


@dataclass(frozen=True)
class Shot:
    prompt: str
    seconds: float = DEFAULT_SHOT_SECONDS
    seed: int | None = None  # None: the run's seed + the shot's index
    name: str = ""
    characters: tuple[str, ...] = ()  # who is in the shot; put in front when the prompt omits them
    setting: str | None = None  # None: the bible's; "" for none


@dataclass(frozen=True)
class ShotList:
    bible: SceneBible
    shots: tuple[Shot, ...]
    fps: float = DEFAULT_FPS
    size: tuple[int, int] = DEFAULT_SIZE  # (width, height)


# ----------------------------------------------------------------------------- expansion


def _mentions(name: str) -> re.Pattern[str]:
    """How a prompt refers to a character: "the hero" (or "hero" at the very start) for a
    common noun; a capitalised name such as "Mia" wherever it stands. Never "a blue circle": an
    article or adjective other than "the" in front means a different object of that kind."""
    word = re.escape(name)
    if name[:1].isupper():
        return re.compile(rf"\b{word}\b")
    return re.compile(rf"(?:\bthe\s+|^){word}\b", re.IGNORECASE)


def _names_setting(prompt: str) -> bool:
    return re.search(r"\b(background|backdrop)s?\b", prompt, re.IGNORECASE) is not None


def shot_prompt(bible: SceneBible, shot: Shot) -> str:
    """The prompt the model gets: the shot's prompt with the bible composed in.

    1. every mention of a character ("the hero") becomes its description ("a small red circle");
    2. characters the shot lists in `characters` but its prompt does not mention go in front;
    3. the setting (the shot's own, else the bible's) is appended unless the prompt names a
       background already or contains the setting;
    4. the style is appended after a comma.
    """
    text = shot.prompt.strip()
    end = re.search(r"[.!?]*$", text)
    text, stop = text[: end.start()].rstrip(), end.group()
    missing = [n for n in shot.characters if not _mentions(n).search(text)]
    names = sorted(bible.characters, key=len, reverse=True)  # "old man" before "man"
    for k, name in enumerate(names):  # placeholders first: a description is not searched again
        text = _mentions(name).sub(f"\0{k}\0", text)
    text = re.sub("\0(\\d+)\0", lambda m: bible.characters[names[int(m.group(1))]], text)
    if missing:
        text = " and ".join(bible.characters[n] for n in missing) + " " + text
    setting = bible.setting if shot.setting is None else shot.setting
    if setting and not _names_setting(text) and setting.lower() not in text.lower():
        text = f"{text} {setting.strip()}"
    if bible.style:
        text = f"{text}, {bible.style.strip()}"
    return text + stop


def shot_seed(shot: Shot, index: int, seed: int) -> int:
    return shot.seed if shot.seed is not None else seed + index


# ----------------------------------------------------------------------------- the planner

_SPLIT = re.compile(
    r"(?<=[.!?])\s+|;|,?\s*\b(?:and\s+)?then\b,?|,?\s*\bnext\s*[,:]|,?\s*\bcut\s+to\b:?"
    r"|,?\s*\bafter\s+that\b,?",
    re.IGNORECASE,
)
_CONNECTOR = re.compile(r"^(?:(?:and|then|next|finally|now)\b,?\s*)+", re.IGNORECASE)
_SETTING = re.compile(
    r"\b(?:on|over|against|in\s+front\s+of)\s+(?:a|an|the)\s+(?:[\w-]+\s+){0,3}?"
    r"(?:background|backdrop)\b",
    re.IGNORECASE,
)
_SHAPE_ALIASES = {w: words for words in SHAPE_WORDS.values() for w in words}
_SHAPE_SUBJECT = re.compile(
    rf"^(?:a|an|the|one)\s+(?:(?!(?:a|an|the|with|in|on|of|and)\b)[\w-]+\s+){{0,3}}?"
    rf"({'|'.join(_SHAPE_ALIASES)})\b",
    re.IGNORECASE,
)
_VERB_WORDS = {"is", "are", "was", "were", "has", "can", "will", "and", "then"}
_PREPOSITIONS = {"in", "on", "at", "with", "by", "near", "under", "over", "of", "from", "a", "an"}
_PRONOUN = re.compile(r"^(?:it|he|she|they)\b", re.IGNORECASE)
_SUBJECT_START = re.compile(r"^(?:a|an|the|one|two|three|it|he|she|they)\b", re.IGNORECASE)


def _subject(first: str) -> tuple[str, str, list[str]] | None:
    """The first shot's subject: (phrase, name, words that also refer to it), or None.

    Shapes world: an article, up to three words, a shape noun ("a small red ball": name "ball",
    also "the circle", "the disc", ...). Free text: an article and the words up to the first
    verb-looking word (-s, -ed, -ing, "is", ...), named by the noun before any preposition
    ("a girl in a red coat walks" -> "a girl in a red coat", name "girl")."""
    if m := _SHAPE_SUBJECT.match(first):
        noun = m.group(1).lower()
        return m.group(0), noun, _SHAPE_ALIASES[noun]
    words = re.findall(r"[\w'-]+", first)
    if len(words) < 3 or words[0].lower() not in ("a", "an", "the"):
        return None
    for k in range(2, min(len(words), 9)):
        w = words[k].lower()
        if w in _VERB_WORDS or (
            w.endswith(("s", "ed", "ing")) and words[k - 1] not in _PREPOSITIONS
        ):
            head = next((j for j in range(2, k) if words[j].lower() in _PREPOSITIONS), k) - 1
            phrase = re.match(r"\W*" + r"\W+".join(map(re.escape, words[:k])), first).group(0)
            return phrase, words[head].lower(), [words[head].lower()]
    return None


def plan_shots(prompt: str, default_seconds: float = DEFAULT_SHOT_SECONDS) -> ShotList:
    """Split one prompt into shots with a scene bible. Rule-based, not a language model:

    - shots are split at sentence ends, ";", "then", "next", "cut to" and "after that";
    - the setting is the first "on a ... background" (or backdrop) phrase anywhere; shots that
      say it lose it (the bible adds it back), shots that name another background keep theirs;
    - the main character is the first shot's subject (see `_subject`); a later shot that starts
      with "it"/"he"/"she"/"they", says "the <its noun>" (or, in the Shapes world, a synonym such
      as "the ball" for a circle), or starts without a subject ("moves up") refers to it;
    - every shot lasts `default_seconds`.
    It does not resolve other pronouns, count objects, infer durations or understand negation.
    """
    text = check_prompt(prompt)
    if not 0 < default_seconds <= MAX_SHOT_SECONDS:
        raise ValueError(
            f"seconds per shot must be more than 0 and at most {MAX_SHOT_SECONDS:g}, "
            f"got {default_seconds:g}"
        )
    pieces = [_CONNECTOR.sub("", p.strip(" ,.!?:")).strip(" ,") for p in _SPLIT.split(text)]
    pieces = [p for p in pieces if p]
    if not pieces:
        raise ValueError(f"no shot left in {text!r} after splitting it at sentences and 'then'")
    setting = ""
    for piece in pieces:
        if m := _SETTING.search(piece):
            setting = m.group(0)[0].lower() + m.group(0)[1:]
            break
    if setting:
        same = re.compile(r",?\s*" + r"\s+".join(map(re.escape, setting.split())), re.IGNORECASE)
        pieces = [same.sub("", p).strip(" ,") or p for p in pieces]
    characters: dict[str, str] = {}
    if subject := _subject(pieces[0]):
        phrase, name, aliases = subject
        characters[name] = phrase[0].lower() + phrase[1:]
        pieces[0] = f"the {name}" + pieces[0][len(phrase) :]
        alias = re.compile(rf"\bthe\s+(?:{'|'.join(map(re.escape, aliases))})\b", re.IGNORECASE)
        for k in range(1, len(pieces)):
            p = _PRONOUN.sub(f"the {name}", alias.sub(f"the {name}", pieces[k]), count=1)
            pieces[k] = p if _SUBJECT_START.match(p) else f"the {name} {p}"
    shots = tuple(Shot(p, default_seconds, None, f"shot{k + 1}") for k, p in enumerate(pieces))
    return ShotList(SceneBible(characters, setting), shots)


# ----------------------------------------------------------------------------- generation


def generate_shots(
    pipe: Pipeline,
    shot_list: ShotList,
    seed: int = 0,
    callback: Callable[[int, int], None] | None = None,
    *,
    steps: int | None = None,
    guidance: float | None = None,
) -> Video:
    """Generate every shot with the bible composed in and join them with hard cuts.

    Everything is checked before the first shot and held in memory: nothing is written here
    (save the result once). callback(shots_done, shots_total) after each shot. The metadata
    lists the shots: name, prompt (expanded), seconds, seed, start_frame, frames.
    """
    sampler = sampler_overrides(steps, guidance)
    width, height = shot_list.size
    prompts = [check_prompt(shot_prompt(shot_list.bible, s)) for s in shot_list.shots]
    if not prompts:
        raise ValueError("the shot list has no shots")
    for shot in shot_list.shots:
        settings = GenerationSettings.from_seconds(
            shot.seconds, shot_list.fps, width=width, height=height, **sampler
        )
        check_settings(settings, pipe.t2v.vae, pipe.t2v.dit)
    clips, rows, start = [], [], 0
    for k, (shot, prompt) in enumerate(zip(shot_list.shots, prompts, strict=True)):
        k_seed = shot_seed(shot, k, seed)
        video = pipe(prompt, seed=k_seed, seconds=shot.seconds, fps=shot_list.fps,
                     width=width, height=height, **sampler)  # fmt: skip
        clips.append(video.frames)
        rows.append(dict(name=shot.name, prompt=prompt, seconds=shot.seconds, seed=k_seed,
                         start_frame=start, frames=len(video.frames)))  # fmt: skip
        start += len(video.frames)
        if callback is not None:
            callback(k + 1, len(prompts))
    shared = {k: v for k, v in video.metadata.items()
              if k not in ("prompt", "seed", "num_frames", "timings")}  # fmt: skip
    meta = {
        "prompt": " | ".join(prompts),
        **shared,
        "seed": seed,
        "num_frames": start,
        "bible": asdict(shot_list.bible),
        "shots": rows,
    }
    return Video(np.concatenate(clips), shot_list.fps, meta)


def shot_clips(video: Video) -> list[np.ndarray]:
    """The frames of each shot of a `generate_shots` video, from its metadata."""
    return [video.frames[r["start_frame"] : r["start_frame"] + r["frames"]]
            for r in video.metadata["shots"]]  # fmt: skip


# ----------------------------------------------------------------------------- loading


@dataclass(frozen=True)
class Problem:
    line: int  # 1-based; 0 when there is no line to name
    field: str  # e.g. "shot 2, seconds" or "bible.characters.hero"
    message: str


class ShotListError(ValueError):
    """A shot list that cannot be used: every problem, each with its line and field."""

    def __init__(self, source: str, problems: list[Problem]):
        self.source, self.problems = source, sorted(problems, key=lambda p: p.line)
        parts = []
        for p in self.problems:
            where = f"{source}:{p.line}" if p.line else source
            parts.append(f"{where}: {p.field}: {p.message}" if p.field else f"{where}: {p.message}")
        super().__init__("; ".join(parts))


DocPath = tuple  # where in the document: ("shots", 1, "seconds")


def _field(path: DocPath) -> str:
    if len(path) >= 2 and path[0] == "shots" and isinstance(path[1], int):
        return f"shot {path[1] + 1}" + (f", {path[2]}" if len(path) > 2 else "")
    return ".".join(str(p) for p in path)


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return f"true/false ({value})"
    if value is None:
        return "nothing"
    kinds = {str: "text", int: "a number", float: "a number", list: "a list", dict: "a mapping"}
    shown = json.dumps(value, default=str)
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    return f"{kinds.get(type(value), type(value).__name__)} {shown}"


class _Checker:
    """Collects problems, each placed at the line of its path (or the nearest parent's)."""

    def __init__(self, lines: dict[DocPath, int], problems: list[Problem]):
        self.lines, self.problems = lines, problems

    def add(self, path: DocPath, message: str) -> None:
        line = next((self.lines[path[:k]] for k in range(len(path), -1, -1)
                     if path[:k] in self.lines), 1)  # fmt: skip
        self.problems.append(Problem(line, _field(path), message))

    def keys(self, path: DocPath, mapping: dict, known: tuple[str, ...]) -> None:
        for key in mapping:
            if key not in known:
                self.add((*path, key), f"unknown key; known: {', '.join(known)}")

    def text(self, path: DocPath, value: object, empty_ok: bool = True) -> str | None:
        if not isinstance(value, str):
            self.add(path, f"must be text, got {_kind(value)}")
        elif not empty_ok and not value.strip():
            self.add(path, "must not be empty")
        else:
            return value.strip()
        return None

    def number(self, path: DocPath, value: object, high: float, unit: str) -> float | None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.add(path, f"must be a number of {unit}, got {_kind(value)}")
        elif not (math.isfinite(value) and 0 < value <= high):
            self.add(path, f"must be more than 0 and at most {high:g} {unit}, got {value:g}")
        else:
            return float(value)
        return None


def load_shot_list(path: str | Path) -> ShotList:
    """Read a shot list from .yaml/.yml or .json.

    Raises:
        ShotListError: naming the file, the line and the field of every problem found.
    """
    path = Path(path)
    source = path.name
    if path.suffix.lower() not in SUFFIXES:
        raise ShotListError(
            source, [Problem(0, "", "a shot list must end in .yaml, .yml or .json")]
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        reason = getattr(e, "strerror", None) or str(e)
        raise ShotListError(
            str(path), [Problem(0, "", f"cannot read the shot list: {reason}")]
        ) from None
    reader = _read_json if path.suffix.lower() == ".json" else _read_yaml
    data, lines, problems = reader(text, source)
    check = _Checker(lines, problems)
    shot_list = _shot_list(data, check)
    if check.problems or shot_list is None:
        raise ShotListError(source, check.problems)
    return shot_list


def _read_yaml(text: str, source: str) -> tuple[object, dict[DocPath, int], list[Problem]]:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        reason = " ".join(str(e.problem or e.context or "").split())
        raise ShotListError(
            source, [Problem(mark.line + 1 if mark else 1, "", f"not valid YAML: {reason}")]
        ) from None
    except yaml.YAMLError as e:
        raise ShotListError(
            source, [Problem(1, "", f"not valid YAML: {' '.join(str(e).split())}")]
        ) from None
    finally:
        loader.dispose()
    lines: dict[DocPath, int] = {}
    problems: list[Problem] = []

    def walk(n: yaml.Node, at: DocPath) -> None:
        if isinstance(n, yaml.MappingNode):
            seen = set()
            for key, value in n.value:
                k = key.value if isinstance(key, yaml.ScalarNode) else None
                if k in seen:
                    problems.append(
                        Problem(key.start_mark.line + 1, _field((*at, k)), "duplicate key")
                    )
                seen.add(k)
                lines[(*at, k)] = key.start_mark.line + 1
                walk(value, (*at, k))
        elif isinstance(n, yaml.SequenceNode):
            for k, item in enumerate(n.value):
                lines[(*at, k)] = item.start_mark.line + 1
                walk(item, (*at, k))

    if node is not None:
        lines[()] = node.start_mark.line + 1
        walk(node, ())
    return data, lines, problems


def _read_json(text: str, source: str) -> tuple[object, dict[DocPath, int], list[Problem]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ShotListError(source, [Problem(e.lineno, "", f"not valid JSON: {e.msg}")]) from None
    newlines = [k for k, c in enumerate(text) if c == "\n"]
    lines: dict[DocPath, int] = {}
    problems: list[Problem] = []

    def line_at(i: int) -> int:
        return bisect.bisect_left(newlines, i) + 1

    def skip(i: int) -> int:
        while i < len(text) and text[i] in " \t\r\n":
            i += 1
        return i

    def value(i: int, at: DocPath) -> int:
        """Walk the (valid) JSON value at text[i:], noting lines; return the index after it."""
        i = skip(i)
        lines[at] = line_at(i) if at not in lines else lines[at]
        if text[i] == "{":
            i, seen = skip(i + 1), set()
            while text[i] != "}":
                key, end = scanstring(text, i + 1)
                if key in seen:
                    problems.append(Problem(line_at(i), _field((*at, key)), "duplicate key"))
                seen.add(key)
                lines[(*at, key)] = line_at(i)
                i = skip(value(skip(end) + 1, (*at, key)))  # after the ':'
                i = skip(i + 1) if text[i] == "," else i
            return i + 1
        if text[i] == "[":
            i, k = skip(i + 1), 0
            while text[i] != "]":
                i = skip(value(i, (*at, k)))
                i, k = (skip(i + 1) if text[i] == "," else i), k + 1
            return i + 1
        if text[i] == '"':
            return scanstring(text, i + 1)[1]
        return _JSON_ATOM.match(text, i).end()  # number, true, false, null

    value(0, ())
    return data, lines, problems


def _shot_list(data: object, c: _Checker) -> ShotList | None:
    if data is None:
        c.add((), "the shot list is empty: give a 'bible' and 'shots'")
        return None
    if not isinstance(data, dict):
        c.add((), f"must be a mapping with 'bible' and 'shots', got {_kind(data)}")
        return None
    c.keys((), data, TOP_KEYS)
    bible = _bible(data.get("bible", {}), c)
    fps = c.number(("fps",), data.get("fps", DEFAULT_FPS), 120.0, "frames per second")
    size = _size(data.get("size", "x".join(map(str, DEFAULT_SIZE))), c)
    if "shots" not in data:
        c.add((), "missing 'shots': a list of shots, each with a 'prompt'")
        return None
    raw = data["shots"]
    if not isinstance(raw, list):
        c.add(("shots",), f"must be a list of shots, got {_kind(raw)}")
        return None
    if not raw:
        c.add(("shots",), "the shot list has no shots")
        return None
    shots = [_shot(s, k, bible, c) for k, s in enumerate(raw)]
    names: dict[str, int] = {}
    for k, shot in enumerate(shots):
        if shot is not None and shot.name in names:
            c.add(("shots", k, "name"), f"{shot.name!r} is also shot {names[shot.name] + 1}'s name")
        elif shot is not None:
            names[shot.name] = k
    if c.problems or bible is None or fps is None or size is None:
        return None
    return ShotList(bible, tuple(shots), fps, size)


def _bible(raw: object, c: _Checker) -> SceneBible | None:
    at = ("bible",)
    if not isinstance(raw, dict):
        c.add(at, f"must be a mapping with 'characters' and 'setting', got {_kind(raw)}")
        return None
    c.keys(at, raw, BIBLE_KEYS)
    characters: dict[str, str] = {}
    chars = raw.get("characters", {})
    if not isinstance(chars, dict):
        c.add((*at, "characters"), f"must be a mapping of name: description, got {_kind(chars)}")
    else:
        for name, description in chars.items():
            where = (*at, "characters", name)
            if not isinstance(name, str) or not re.fullmatch(
                r"[A-Za-z][\w'-]*(?: [A-Za-z][\w'-]*)*", name
            ):
                c.add(where, "a character's name must be a word or words, e.g. hero or old man")
            elif (text := c.text(where, description, empty_ok=False)) is not None:
                characters[name] = text
    setting = c.text((*at, "setting"), raw.get("setting", ""))
    style = c.text((*at, "style"), raw.get("style", ""))
    if setting is None or style is None:
        return None
    return SceneBible(characters, setting, style)


def _size(raw: object, c: _Checker) -> tuple[int, int] | None:
    if isinstance(raw, str) and (m := re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", raw)):
        width, height = int(m.group(1)), int(m.group(2))
    elif isinstance(raw, list) and len(raw) == 2 and all(type(v) is int for v in raw):
        width, height = raw
    else:
        c.add(("size",), f"must be WIDTHxHEIGHT such as 64x64, got {_kind(raw)}")
        return None
    if not (0 < width <= 4096 and 0 < height <= 4096):
        c.add(("size",), f"width and height must be 1 to 4096, got {width}x{height}")
        return None
    return width, height


def _shot(raw: object, k: int, bible: SceneBible | None, c: _Checker) -> Shot | None:
    at = ("shots", k)
    if not isinstance(raw, dict):
        c.add(at, f"must be a mapping with a 'prompt', got {_kind(raw)}")
        return None
    c.keys(at, raw, SHOT_KEYS)
    before = len(c.problems)
    prompt = None
    if "prompt" not in raw:
        c.add(at, "missing 'prompt'")
    else:
        prompt = c.text((*at, "prompt"), raw["prompt"], empty_ok=False)
    seconds = c.number((*at, "seconds"), raw.get("seconds", DEFAULT_SHOT_SECONDS), MAX_SHOT_SECONDS, "seconds")  # fmt: skip
    seed = raw.get("seed")
    if seed is not None and (type(seed) is not int or not 0 <= seed < 2**63):
        c.add((*at, "seed"), f"must be a whole number, 0 or more, got {_kind(seed)}")
    name = c.text((*at, "name"), raw.get("name", f"shot{k + 1}"), empty_ok=False)
    setting = raw.get("setting")
    if setting is not None:
        setting = c.text((*at, "setting"), setting)
    cast: list[str] = []
    names = raw.get("characters", [])
    if not isinstance(names, list):
        c.add((*at, "characters"), f"must be a list of character names, got {_kind(names)}")
    else:
        known = bible.characters if bible is not None else {}
        for j, who in enumerate(names):
            if who in known:
                cast.append(who)
            else:
                have = ", ".join(known) or "none"
                c.add(
                    (*at, "characters", j),
                    f"unknown character {json.dumps(who)}; the bible has: {have}",
                )
    if len(c.problems) > before or prompt is None or seconds is None or name is None:
        return None
    shot = Shot(prompt, seconds, seed, name, tuple(cast), setting)
    if bible is not None and len(expanded := shot_prompt(bible, shot)) > MAX_PROMPT_CHARS:
        c.add(
            (*at, "prompt"),
            f"with the bible it has {len(expanded)} characters; the limit is {MAX_PROMPT_CHARS}",
        )
        return None
    return shot
