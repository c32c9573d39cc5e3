"""ReCLAP bank generation against a real local OpenAI-compatible server that answers deterministically."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from search.prompt_generation import (
    API_KEY_ENV,
    DEFAULT_TEMPERATURE,
    SYSTEM_PROMPT,
    chat_completions_url,
    descriptions_request,
    generate_bank,
    parse_list_reply,
    prompts_request,
)
from search.prompts import LabelSet, PromptBank, PromptError


@dataclass
class FakeLLM:
    """What the server was asked, and how it answers (`mode`, per label in `modes`)."""

    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    mode: str = "json"
    modes: dict[str, str] = field(default_factory=dict)


def _stage_and_label(body: dict[str, Any]) -> tuple[str, str, int]:
    user = body["messages"][-1]["content"]
    label = re.search(r'Sound label: "([^"]+)"', user).group(1)
    count = int(re.search(r"Write (\d+) different", user).group(1))
    return ("prompts" if "Descriptions of its sound:" in user else "descriptions"), label, count


def _reply_items(stage: str, label: str, count: int) -> list[str]:
    word = "description" if stage == "descriptions" else "caption"
    return [f"{label} {word} {i}" for i in range(count)]


def _format(items: list[str], mode: str) -> str:
    if mode == "fenced":
        return "```json\n" + json.dumps(items, indent=2) + "\n```"
    if mode == "lines":
        return "Here they are:\n\n" + "\n".join(f'{i + 1}. "{item}"' for i, item in enumerate(items)) + "\n"
    if mode == "short":
        return json.dumps(items[:1])
    return json.dumps(items)


@pytest.fixture
def fake_llm(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLLM]:
    """A ThreadingHTTPServer on 127.0.0.1 serving POST /v1/chat/completions."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    state = FakeLLM()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers["Content-Length"]))
            body = json.loads(raw)
            state.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
            stage, label, count = _stage_and_label(body)
            mode = state.modes.get(label, state.mode)
            if self.path != "/v1/chat/completions":
                return self._send(404, b'{"error": "not found"}')
            if mode == "500":
                return self._send(500, b'{"error": {"message": "model overloaded"}}')
            if mode == "malformed":
                return self._send(200, b"<html>this is not json</html>")
            if mode == "no-choices":
                return self._send(200, b'{"choices": []}')
            if mode == "slow":
                time.sleep(1.0)
            content = _format(_reply_items(stage, label, count), mode)
            reply = {
                "id": "chatcmpl-test",
                "object": "chat.completion",
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content},
                        "finish_reason": "stop",
                    }
                ],
            }
            self._send(200, json.dumps(reply).encode())

        def _send(self, status: int, payload: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            try:
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout test)

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        block_on_close = False

    server = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


LABELS = LabelSet("test", ("dog", "sea_waves"))


def test_two_requests_per_label_in_order_with_exact_bodies(fake_llm: FakeLLM) -> None:
    bank = generate_bank(LABELS, fake_llm.url, model="test-model", descriptions=3, prompts=6, seed=7)

    assert [r["path"] for r in fake_llm.requests] == ["/v1/chat/completions"] * 4
    bodies = [r["body"] for r in fake_llm.requests]
    for body in bodies:
        assert set(body) == {"model", "messages", "temperature", "seed"}
        assert body["model"] == "test-model"
        assert body["seed"] == 7
        assert body["temperature"] == DEFAULT_TEMPERATURE
        assert [m["role"] for m in body["messages"]] == ["system", "user"]
        assert body["messages"][0]["content"] == SYSTEM_PROMPT
    dog_descriptions = [f"dog description {i}" for i in range(3)]
    sea_descriptions = [f"sea waves description {i}" for i in range(3)]
    # Stage 1 then stage 2 for each label; the label reads "sea waves", not "sea_waves".
    assert bodies[0]["messages"] == descriptions_request("dog", 3)
    assert bodies[1]["messages"] == prompts_request("dog", dog_descriptions, 6)
    assert bodies[2]["messages"] == descriptions_request("sea waves", 3)
    assert bodies[3]["messages"] == prompts_request("sea waves", sea_descriptions, 6)
    for description in dog_descriptions:
        assert description in bodies[1]["messages"][1]["content"]
    assert "Write 3 different descriptions" in bodies[0]["messages"][1]["content"]
    assert "Write 6 different one-sentence audio captions" in bodies[1]["messages"][1]["content"]
    for request in fake_llm.requests:
        headers = {k.lower(): v for k, v in request["headers"].items()}
        assert headers["content-type"] == "application/json"
        assert "authorization" not in headers

    assert list(bank.entries) == ["dog", "sea_waves"]
    assert bank.entries["dog"].descriptions == tuple(dog_descriptions)
    assert bank.entries["dog"].prompts == tuple(f"dog caption {i}" for i in range(6))
    assert bank.entries["sea_waves"].descriptions == tuple(sea_descriptions)
    assert bank.entries["sea_waves"].prompts == tuple(f"sea waves caption {i}" for i in range(6))


def test_cli_writes_a_bank_that_classify_can_use(fake_llm: FakeLLM, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from search.cli import main

    (tmp_path / "labels.txt").write_text("dog\nsea_waves\n")
    result = CliRunner().invoke(main, ["prompts", "generate", "--labels", str(tmp_path / "labels.txt"), "--llm-url",
                                       fake_llm.url, "--llm-model", "test-model", "--per-label", "4",
                                       "--out", str(tmp_path / "bank.json")])
    assert result.exit_code == 0, result.output
    assert f"{tmp_path / 'bank.json'}: 2 labels, 8 prompts" in result.stdout
    assert len(fake_llm.requests) == 4 and fake_llm.requests[0]["body"]["model"] == "test-model"
    bank = PromptBank.load(tmp_path / "bank.json")
    assert bank.entries["sea_waves"].prompts == tuple(f"sea waves caption {i}" for i in range(4))


def test_bank_saves_and_loads(fake_llm: FakeLLM, tmp_path: Path) -> None:
    bank = generate_bank(LABELS, fake_llm.url, model="m", descriptions=2, prompts=3)
    bank.save(tmp_path / "bank.json")
    assert PromptBank.load(tmp_path / "bank.json").entries == bank.entries


def test_api_key_full_endpoint_url_and_no_seed(fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(API_KEY_ENV, "sk-test")
    generate_bank(LabelSet("one", ("dog",)), fake_llm.url + "/chat/completions/", model="m", seed=None)
    assert len(fake_llm.requests) == 2
    for request in fake_llm.requests:
        assert request["path"] == "/v1/chat/completions"
        headers = {k.lower(): v for k, v in request["headers"].items()}
        assert headers["authorization"] == "Bearer sk-test"
        assert set(request["body"]) == {"model", "messages", "temperature"}


def test_label_file_description_is_passed_as_hint(fake_llm: FakeLLM) -> None:
    labels = LabelSet("hinted", ("organ",), {"organ": "a church pipe organ"})
    generate_bank(labels, fake_llm.url, descriptions=1, prompts=1)
    for request in fake_llm.requests:
        assert 'Sound label: "organ" (a church pipe organ).' in request["body"]["messages"][1]["content"]


@pytest.mark.parametrize("mode", ["fenced", "lines"])
def test_fenced_and_line_replies_are_parsed(fake_llm: FakeLLM, mode: str) -> None:
    fake_llm.mode = mode
    bank = generate_bank(LABELS, fake_llm.url, descriptions=4, prompts=7)
    assert bank.entries["dog"].descriptions == tuple(f"dog description {i}" for i in range(4))
    assert bank.entries["sea_waves"].prompts == tuple(f"sea waves caption {i}" for i in range(7))


def test_progress_is_reported_per_label(fake_llm: FakeLLM) -> None:
    seen: list[tuple[int, int, str]] = []
    generate_bank(LABELS, fake_llm.url, progress=lambda done, total, label: seen.append((done, total, label)))
    assert seen == [(1, 2, "dog"), (2, 2, "sea_waves")]


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("500", r"HTTP 500.*model overloaded"),
        ("malformed", r"sent no chat completion.*not json"),
        ("no-choices", r"sent no chat completion"),
        ("short", r"asked for 6 prompts, the reply holds 1"),
    ],
)
def test_bad_replies_raise_prompt_error_naming_the_label(fake_llm: FakeLLM, mode: str, reason: str) -> None:
    fake_llm.modes["sea waves"] = mode  # the server sees the label as it reads
    with pytest.raises(PromptError, match=r"label 'sea_waves', stage \d .*" + reason):
        generate_bank(LABELS, fake_llm.url, descriptions=1 if mode == "short" else 3, prompts=6)


def test_timeout_raises_prompt_error(fake_llm: FakeLLM) -> None:
    fake_llm.mode = "slow"
    with pytest.raises(PromptError, match=r"label 'dog', stage 1 .*did not answer within 0.2 s"):
        generate_bank(LABELS, fake_llm.url, timeout=0.2)


def test_unreachable_server_raises_prompt_error(fake_llm: FakeLLM) -> None:
    # A port that was free a moment ago: nothing listens there.
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(PromptError, match=r"label 'dog', stage 1 .*cannot reach"):
        generate_bank(LABELS, f"http://127.0.0.1:{port}/v1", timeout=5)


def test_chat_completions_url() -> None:
    assert chat_completions_url("http://localhost:8000/v1") == "http://localhost:8000/v1/chat/completions"
    assert chat_completions_url("http://localhost:8000/v1/") == "http://localhost:8000/v1/chat/completions"
    assert chat_completions_url("https://h/v1/chat/completions") == "https://h/v1/chat/completions"


@pytest.mark.parametrize(
    ("reply", "items"),
    [
        ('["a", "b"]', ["a", "b"]),
        ('```json\n["a", "b"]\n```', ["a", "b"]),
        ('```\n[\n  "a",\n  "b"\n]\n```', ["a", "b"]),
        ('{"descriptions": ["a", "b"]}', ["a", "b"]),
        ('Sure! Here are the captions: ["a", "b"] Hope this helps.', ["a", "b"]),
        ("1. a\n2) b\n\n- c\n* d\n\u2022 e", ["a", "b", "c", "d", "e"]),
        ("Here they are:\n1. a\n2. b\nEnjoy!", ["a", "b"]),
        ('"a",\n"b",', ["a", "b"]),
        ('["a", " a ", "", "b  c"]', ["a", "b c"]),
        ("only one line", ["only one line"]),
        ("", []),
    ],
)
def test_parse_list_reply(reply: str, items: list[str]) -> None:
    assert parse_list_reply(reply) == items


def test_needs_at_least_one_description_and_prompt() -> None:
    with pytest.raises(PromptError, match="at least 1"):
        generate_bank(LABELS, "http://127.0.0.1:9/v1", descriptions=0)
