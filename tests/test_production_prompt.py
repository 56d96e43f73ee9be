"""The prompt stage: safety policy (block and allow lists, files, classifier names) and prompt
expansion (the built-in Shapes expander, and a chat endpoint served by a fake local server)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from kinema.production.expand import ChatExpander, ExpansionError, ShapesExpander
from kinema.production.policy import (
    DEFAULT_POLICY,
    KeywordClassifier,
    PolicyError,
    PromptRefused,
    check_prompt_safety,
    load_policy,
    prompt_classifiers,
)
from kinema.world.parse import parse_caption

# ----------------------------------------------------------------------------- policy


def test_default_policy_refuses_listed_words_with_the_category():
    check = prompt_classifiers(DEFAULT_POLICY)
    with pytest.raises(PromptRefused, match="category 'violence'.*'gore'.*nothing was generated"):
        check_prompt_safety("a red circle moving left, lots of GORE", check)
    check_prompt_safety("a red circle moving left on a black background", check)
    check_prompt_safety("a gorgeous sunset", check)  # whole words only: 'gore' is not in it


def test_policy_file_block_and_allow_lists(tmp_path):
    path = tmp_path / "studio.yaml"
    path.write_text(
        "categories:\n  weapons: [gun, rifle]\nallow: [water gun]\n"
        "colour_signatures:\n  - {name: brand, rgb: [230, 40, 40], max_fraction: 0.3}\n"
    )
    policy = load_policy(path)
    assert policy.name == "studio" and policy.colour_signatures[0].rgb == (230, 40, 40)
    classifier = KeywordClassifier(policy)
    assert "weapons" in classifier("a man with a Gun")
    assert classifier("a kid with a water gun") is None  # allowed phrase taken out first
    assert "weapons" in classifier("a water gun and a rifle")
    assert classifier("gore") is None  # the file's categories replace the defaults
    json_path = tmp_path / "p.json"
    json_path.write_text(json.dumps({"name": "j", "categories": {"x": ["forbidden phrase"]}}))
    assert "'x'" in KeywordClassifier(load_policy(json_path))("a Forbidden  phrase here")


@pytest.mark.parametrize(
    "text, message",
    [
        (None, "does not exist"),
        ("categories: [a, b", "not valid yaml"),
        ("- just a list", "must hold a mapping"),
        ("colours: {}", "unknown key(s) colours"),
        (
            "frame_classifiers: [nsfw-net]",
            "unknown frame classifier 'nsfw-net'; known: heuristic, none",
        ),
        ("prompt_classifiers: [llm]", "unknown prompt classifier 'llm'"),
        ("categories: {x: gun}", "category 'x' must be a list"),
        ("colour_signatures: [{rgb: [1, 2]}]", "three values"),
    ],
)
def test_bad_policy_files_are_one_clear_error(tmp_path, text, message):
    path = tmp_path / "policy.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(PolicyError, match="policy") as err:
        load_policy(path)
    assert message in str(err.value) and "\n" not in str(err.value)


# ----------------------------------------------------------------------------- expansion


def test_shapes_expander_adds_motion_and_background_in_the_grammar():
    expand = ShapesExpander()
    out = expand("a red circle", seed=0)
    scene = parse_caption(out)  # still the grammar the model knows
    assert scene.objects[0].motion != "still" and out.startswith("a red circle ")
    assert " background" in out
    assert expand("a red circle", seed=0) == out  # the seed decides
    full = "a red ball drifting left over a black backdrop"
    assert expand(full, seed=3) == full  # nothing missing: unchanged, paraphrase kept
    still = "a red circle standing still on a navy background"
    assert expand(still, seed=1) == still  # "still" is a motion the user chose
    assert expand("a cat playing piano", seed=0) == "a cat playing piano"  # free text: left alone


def test_shapes_expander_keeps_what_is_said_and_fills_per_object():
    out = ShapesExpander()("two small green triangles and a blue square moving up", seed=2)
    scene = parse_caption(out)
    kinds = [(o.shape, o.color, o.size, o.motion) for o in scene.objects]
    assert kinds[0][:3] == ("triangle", "green", "small") and kinds[0] == kinds[1]
    assert kinds[0][3] != "still"  # the triangles got one motion for both
    assert kinds[2] == ("square", "blue", "medium", "up")
    with_bg = ShapesExpander()("a yellow square on a gray background", seed=0)
    assert parse_caption(with_bg).background == "gray"


class _FakeChat(BaseHTTPRequestHandler):
    requests: list = []
    answer: object = None

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append(
            {"path": self.path, "body": body, "auth": self.headers.get("Authorization")}
        )
        user = body["messages"][-1]["content"]
        answer = type(self).answer
        payload = answer if answer is not None else {
            "choices": [{"message": {"role": "assistant", "content": f"{user}, drifting slowly left"}}]
        }  # fmt: skip
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def chat_server():
    _FakeChat.requests, _FakeChat.answer = [], None
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeChat)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_chat_expander_calls_the_endpoint(chat_server, monkeypatch):
    monkeypatch.setenv("KINEMA_EXPAND_API_KEY", "sk-test")
    out = ChatExpander(chat_server, model="tiny-llm")("a fox in the snow", seed=7)
    assert out == "a fox in the snow, drifting slowly left"
    (request,) = _FakeChat.requests
    assert request["path"] == "/v1/chat/completions" and request["auth"] == "Bearer sk-test"
    assert request["body"]["model"] == "tiny-llm" and request["body"]["seed"] == 7
    assert request["body"]["messages"][0]["role"] == "system"


def test_chat_expander_errors_are_one_line(chat_server):
    _FakeChat.answer = {"error": "nope"}
    with pytest.raises(ExpansionError, match="not a chat-completions answer"):
        ChatExpander(chat_server)("a fox", seed=0)
    _FakeChat.answer = {"choices": [{"message": {"content": "  "}}]}
    with pytest.raises(ExpansionError, match="empty prompt"):
        ChatExpander(chat_server)("a fox", seed=0)
    with pytest.raises(
        ExpansionError, match=r"expansion at http://127.0.0.1:9/v1/chat/completions failed"
    ):
        ChatExpander("http://127.0.0.1:9/v1", timeout=2)("a fox", seed=0)  # nothing listens there
    with pytest.raises(ExpansionError, match="http"):
        ChatExpander("ftp://example")
