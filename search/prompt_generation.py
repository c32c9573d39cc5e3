"""Prompt banks built for ReCLAP zero-shot classification: by an LLM, or from the demo corpus's phrase tables.

ReCLAP (Ghosh et al. 2024) turns each label into descriptive prompts in two stages:
1. descriptions: the label's sound described by its acoustic characteristics only (pitch, timbre, rhythm,
   loudness, texture), with no scene;
2. prompts: one-sentence captions that place the described sound in different scenes.
`generate_bank` asks any OpenAI-compatible chat-completions endpoint for both stages, one request per stage
and label; the exact request texts are the constants below. `bank_from_caption_phrases` builds the starter
model's bank from `indexer.demo`'s own descriptions and scene phrases, the same ones its training captions use.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any

from search.prompts import BankEntry, LabelSet, PromptBank, PromptError

DEFAULT_MODEL = "gpt-4o-mini"
# Read for an API key, sent as `Authorization: Bearer <key>`; local servers usually need none.
API_KEY_ENV = "RESOUND_LLM_API_KEY"
DEFAULT_TEMPERATURE = 0.7

SYSTEM_PROMPT = (
    "You write short English texts for zero-shot audio classification with a CLAP audio-text model. "
    "Describe only what can be heard. Answer with a JSON array of strings and nothing else."
)
# Stage 1: {n} descriptions of the sound of {label}{hint}, by acoustic characteristics only.
DESCRIPTIONS_TEMPLATE = (
    'Sound label: "{label}"{hint}.\n'
    "Write {n} different descriptions of what the sound of this label is like, using only its acoustic "
    "characteristics: pitch, timbre, rhythm or temporal pattern, loudness and texture. "
    "Each description is a noun phrase of 5 to 15 words, for example "
    '"a dog\'s sharp, loud barks in short bursts". '
    "Do not mention where the sound is heard, and do not name any other sound.\n"
    "Reply with a JSON array of {n} strings."
)
# Stage 2: {m} captions placing the sound of {label}, as described in stage 1, in different scenes.
PROMPTS_TEMPLATE = (
    'Sound label: "{label}"{hint}.\n'
    "Descriptions of its sound:\n{descriptions}\n"
    "Write {m} different one-sentence audio captions, each placing this sound, as described above, in a "
    "different concrete scene or context (a place, a time, a situation), for example "
    '"Sharp, loud barks from a dog echo across a quiet suburban backyard at night." '
    "Keep the sound of the label the main subject of every caption, keep it acoustically truthful, "
    "and do not make any other sound the main subject.\n"
    "Reply with a JSON array of {m} strings."
)

Progress = Callable[[int, int, str], None]

_FENCE = re.compile(r"^\s*```[A-Za-z0-9_-]*\s*\n?(.*?)\n?\s*```\s*$", re.DOTALL)
# List markers an LLM puts before line items: "- ", "* ", "• ", "1. ", "2) ".
_MARKER = re.compile(r"^\s*(?:[-*\u2022]+|\d+[.)])\s+")


def chat_completions_url(llm_url: str) -> str:
    """The chat-completions endpoint of a server's base URL ("http://host/v1"), or the URL itself if it is one."""
    url = llm_url.strip().rstrip("/")
    return url if url.endswith("/chat/completions") else f"{url}/chat/completions"


def descriptions_request(label: str, n: int, hint: str = "") -> list[dict[str, str]]:
    """The chat messages of stage 1: `n` descriptions of the sound of `label` (`hint`: the label file's note)."""
    user = DESCRIPTIONS_TEMPLATE.format(label=label, n=n, hint=f" ({hint})" if hint else "")
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def prompts_request(label: str, descriptions: Sequence[str], m: int, hint: str = "") -> list[dict[str, str]]:
    """The chat messages of stage 2: `m` captions placing the sound of `label`, as `descriptions` say, in scenes."""
    listed = "\n".join(f"- {d}" for d in descriptions)
    user = PROMPTS_TEMPLATE.format(label=label, m=m, descriptions=listed, hint=f" ({hint})" if hint else "")
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def parse_list_reply(text: str) -> list[str]:
    """The items of an LLM's list reply: a JSON array (code fences allowed), else one item per non-empty line.

    A JSON object holding one array ({"descriptions": [...]}) also counts. Without JSON, the lines of a
    numbered or bulleted list if there is one, else every non-empty line. Items are stripped, and
    duplicates and empty items dropped, in order.
    """
    body = text.strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group(1).strip()
    items = _json_items(body)
    if items is None and "[" in body and "]" in body:
        # An array wrapped in prose ("Here are the captions: [...]").
        items = _json_items(body[body.index("[") : body.rindex("]") + 1])
    if items is None:
        lines = [line for line in body.splitlines() if line.strip()]
        marked = [line for line in lines if _MARKER.match(line)]
        # A numbered or bulleted list is the answer; the lines around it are prose ("Here they are:").
        items = [_strip_line(line) for line in (marked or lines)]
        items = [i for i in items if i not in ("[", "]", "{", "}") and not i.startswith("```")]
    out: list[str] = []
    for item in items:
        item = " ".join(item.split())
        if item and item not in out:
            out.append(item)
    return out


def _json_items(body: str) -> list[str] | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if isinstance(data, dict):
        lists = [v for v in data.values() if isinstance(v, list)]
        data = lists[0] if len(lists) == 1 else None
    if not isinstance(data, list) or not all(isinstance(i, str) for i in data):
        return None
    return list(data)


def _strip_line(line: str) -> str:
    line = _MARKER.sub("", line.strip()).strip().rstrip(",").strip()
    if len(line) >= 2 and line[0] == line[-1] and line[0] in "\"'":
        line = line[1:-1]
    return line.strip()


class ChatClient:
    """Minimal client of an OpenAI-compatible `POST /chat/completions` endpoint (standard library only)."""

    def __init__(
        self,
        llm_url: str,
        model: str = DEFAULT_MODEL,
        timeout: float = 60,
        seed: int | None = 0,
        temperature: float = DEFAULT_TEMPERATURE,
        api_key: str | None = None,
    ):
        self.url = chat_completions_url(llm_url)
        self.model = model
        self.timeout = timeout
        self.seed = seed
        self.temperature = temperature
        self.api_key = api_key if api_key is not None else os.environ.get(API_KEY_ENV) or None

    def complete(self, messages: list[dict[str, str]], what: str) -> str:
        """The reply text to `messages`; `what` ("label 'dog', stage 1") names the request in errors."""
        body: dict[str, Any] = {"model": self.model, "messages": messages, "temperature": self.temperature}
        if self.seed is not None:
            body["seed"] = self.seed
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(
            self.url, data=json.dumps(body).encode("utf-8"), headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as e:
            detail = e.read(300).decode("utf-8", "replace").strip().replace("\n", " ")
            raise PromptError(f"{what}: {self.url} answered HTTP {e.code} {e.reason}: {detail}") from e
        except TimeoutError as e:
            raise PromptError(f"{what}: {self.url} did not answer within {self.timeout:g} s") from e
        except urllib.error.URLError as e:
            if isinstance(e.reason, TimeoutError):
                raise PromptError(f"{what}: {self.url} did not answer within {self.timeout:g} s") from e
            raise PromptError(f"{what}: cannot reach {self.url} ({e.reason})") from e
        except OSError as e:
            raise PromptError(f"{what}: request to {self.url} failed ({e})") from e
        try:
            content = json.loads(raw)["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as e:
            raise PromptError(
                f"{what}: {self.url} sent no chat completion ({raw[:200].decode('utf-8', 'replace')!r})"
            ) from e
        if not isinstance(content, str):
            raise PromptError(f"{what}: {self.url} sent a completion without text content")
        return content


def _ask_list(
    client: ChatClient, messages: list[dict[str, str]], count: int, kind: str, what: str
) -> list[str]:
    """`count` items of a list reply; more are cut, fewer raise PromptError."""
    reply = client.complete(messages, what)
    items = parse_list_reply(reply)
    if len(items) < count:
        raise PromptError(
            f"{what}: asked for {count} {kind}, the reply holds {len(items)} "
            f"(reply starts {reply.strip()[:120]!r})"
        )
    return items[:count]


def generate_entry(
    client: ChatClient, label: str, text: str, descriptions: int, prompts: int, hint: str = ""
) -> BankEntry:
    """The bank entry of one label (`text`: how the label reads), by ReCLAP's two stages."""
    found = _ask_list(
        client,
        descriptions_request(text, descriptions, hint),
        descriptions,
        "descriptions",
        f"label {label!r}, stage 1 (descriptions)",
    )
    captions = _ask_list(
        client,
        prompts_request(text, found, prompts, hint),
        prompts,
        "prompts",
        f"label {label!r}, stage 2 (prompts)",
    )
    return BankEntry(tuple(found), tuple(captions))


def generate_bank(
    labels: LabelSet,
    llm_url: str,
    model: str = DEFAULT_MODEL,
    descriptions: int = 3,
    prompts: int = 6,
    timeout: float = 60,
    seed: int | None = 0,
    progress: Progress | None = None,
    temperature: float = DEFAULT_TEMPERATURE,
    api_key: str | None = None,
) -> PromptBank:
    """A ReCLAP prompt bank for every label of `labels`, written by the LLM `model` behind `llm_url`.

    Two requests per label, in label order: `descriptions` descriptions of its sound, then `prompts`
    captions placing that sound in scenes. `progress(done, total, label)` is called after each label.
    The API key is `api_key`, else the RESOUND_LLM_API_KEY environment variable, else none.
    Raises PromptError naming the label on HTTP errors, timeouts and unusable replies.
    """
    if descriptions < 1 or prompts < 1:
        raise PromptError(
            f"need at least 1 description and 1 prompt per label (got {descriptions}, {prompts})"
        )
    client = ChatClient(llm_url, model, timeout, seed, temperature, api_key)
    entries: dict[str, BankEntry] = {}
    for i, label in enumerate(labels.labels):
        hint = labels.descriptions.get(label, "")
        entries[label] = generate_entry(client, label, labels.text(label), descriptions, prompts, hint)
        if progress is not None:
            progress(i + 1, len(labels.labels), label)
    return PromptBank(entries, f"{model} at {client.url}")


def bank_from_caption_phrases() -> PromptBank:
    """The starter model's bank: every `indexer.demo.SOUND_CLASSES` label, from the demo's phrase tables.

    Descriptions are `describe_label(label)`; prompts are "{description} {scene phrase}", the template
    of each demo clip's first caption, one per scene in `indexer.demo.SCENES`, with descriptions and
    phrases taken in turn so that every one is used.
    """
    # indexer.demo pulls in scipy for rendering; only this function needs it.
    from indexer.demo import SCENES, SOUND_CLASSES, describe_label, scene_phrases

    entries = {}
    for label in SOUND_CLASSES:
        descriptions = describe_label(label)
        prompts = []
        for i, scene in enumerate(SCENES):
            phrases = scene_phrases(scene)
            prompts.append(f"{descriptions[i % len(descriptions)]} {phrases[i % len(phrases)]}")
        entries[label] = BankEntry(tuple(descriptions), tuple(prompts))
    return PromptBank(entries, "indexer/demo/caption_phrases.json")
