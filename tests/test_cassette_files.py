"""What a cassette holds and where it lives: uploads that replay, one file per test, stable bytes, no secrets."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import yaml

from llmserver import LLMServer

UPLOADS = """
import base64, json, pytest

AUDIO = bytes(range(256)) * 2  # every byte value: CR LF, NUL and dashes inside a multipart part

def dump(name, value):
    with open(f"out-{name}.json", "w") as f:
        json.dump(value, f)

def test_transcription(seeded_llm):
    first = seeded_llm.client.audio.transcriptions.create(model="whisper-1", file=("a.wav", AUDIO, "audio/wav"))
    again = seeded_llm.client.audio.transcriptions.create(model="whisper-1", file=("a.wav", AUDIO, "audio/wav"))
    dump("transcription", [first.text, again.text])

def test_file_upload(seeded_llm):
    uploaded = seeded_llm.client.files.create(file=("data.jsonl", b'{"a": 1}\\n'), purpose="batch")
    dump("file_upload", uploaded.model_dump())

def test_image_edit(seeded_llm):
    edited = seeded_llm.client.images.edit(image=("i.png", b"\\x89PNG\\r\\n\\x1a\\n\\x00\\xff"), prompt="a hat", n=2)
    dump("image_edit", [image.b64_json for image in edited.data])

def test_embeddings(seeded_llm):
    vectors = seeded_llm.client.embeddings.create(model="text-embedding-3-small", input=["a pear", "a plum"])
    dump("embeddings", [d.embedding for d in vectors.data])
"""
UPLOAD_TESTS = ("transcription", "file_upload", "image_edit", "embeddings")


def cassette_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted((root / "cassettes").rglob("*.yaml"))}


def test_uploads_and_embeddings_replay_offline_and_record_again_unchanged(
    suite: pytest.Pytester, llm_server: LLMServer
) -> None:
    suite.makepyfile(test_uploads=UPLOADS)
    suite.runpytest("--seedrepro-mode=record", "--snapshot-update").assert_outcomes(passed=4)
    recorded = {name: json.loads((suite.path / f"out-{name}.json").read_text()) for name in UPLOAD_TESTS}
    first, again = recorded["transcription"]
    assert first == again == llm_server.expected_transcription(model="whisper-1", audio=bytes(range(256)) * 2)
    files = cassette_bytes(suite.path)
    assert len(files) == 4

    port = llm_server.port
    llm_server.stop()
    result = suite.runpytest("--seedrepro-mode=replay")
    result.assert_outcomes(passed=4)
    for name in UPLOAD_TESTS:
        assert json.loads((suite.path / f"out-{name}.json").read_text()) == recorded[name], name
    assert cassette_bytes(suite.path) == files

    llm_server.start(port=port)
    llm_server.reset()
    suite.runpytest("--seedrepro-mode=record").assert_outcomes(passed=4)
    assert llm_server.requests == []  # every upload matched its recording
    assert cassette_bytes(suite.path) == files


def test_a_changed_upload_in_replay_is_named_a_body_change(suite: pytest.Pytester) -> None:
    test = "def test_a(seeded_llm):\n    seeded_llm.client.files.create(file=('d.txt', {data!r}), purpose='batch')\n"
    suite.makepyfile(test_it=test.format(data=b"one"))
    suite.runpytest("--seedrepro-mode=record", "--snapshot-update").assert_outcomes(passed=1)
    suite.makepyfile(test_it=test.format(data=b"two"))
    result = suite.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["seedrepro: *POST /files * the closest recorded request differs in body. *"])
    result.stdout.no_fnmatch_line("*already replayed*")


FOLDING_IDS = """
import json, pytest

IDS = ["a b", "a_b", "a/b", "ab", "x" * 300, "x" * 299 + "y"]  # the last two: cut to one long prefix

@pytest.mark.parametrize("number", range(len(IDS)), ids=IDS)
def test_it(seeded_llm, number):
    answer = seeded_llm.complete(f"prompt {number}")
    with open(f"out-{number}.json", "w") as f:
        json.dump(answer, f)
"""


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_ids_that_fold_to_one_file_name_get_files_of_their_own(
    suite: pytest.Pytester, llm_server: LLMServer, workers: list[str]
) -> None:
    suite.makepyfile(test_ids=FOLDING_IDS)
    suite.runpytest("--seedrepro-mode=record", "--snapshot-update", *workers).assert_outcomes(passed=6)
    cassettes = sorted((suite.path / "cassettes" / "test_ids").glob("*.yaml"))
    snapshots = sorted((suite.path / "__snapshots__" / "test_ids").glob("*.llm.yaml"))
    assert len(cassettes) == 6 and len(snapshots) == 6
    # Names the sanitising left alone are what they always were: existing files keep working.
    assert {"test_it[a_b].yaml", "test_it[ab].yaml"} <= {p.name for p in cassettes}
    assert {"test_it[a b].llm.yaml", "test_it[a_b].llm.yaml", "test_it[ab].llm.yaml"} <= {
        p.name for p in snapshots
    }
    assert all(len(p.name) <= 255 for p in cassettes + snapshots)
    recorded = {p.name: p.read_text() for p in suite.path.glob("out-*.json")}
    assert len(set(recorded.values())) == 6

    llm_server.stop()
    suite.runpytest("--seedrepro-mode=replay", *workers).assert_outcomes(passed=6)
    assert {p.name: p.read_text() for p in suite.path.glob("out-*.json")} == recorded


def test_cassettes_are_written_by_pyyaml_s_own_emitter_whether_or_not_libyaml_is_there(
    suite: pytest.Pytester, llm_server: LLMServer
) -> None:
    # libyaml's emitter folds long escaped lines elsewhere than PyYAML's: non-ASCII and CR LF show it.
    answer = "Grüße aus Köln, très bien \r\n" * 6
    completion = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "system_fingerprint": "fp_1",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}
        ],
    }
    llm_server.serve_next_raw(json.dumps(completion, ensure_ascii=False))
    suite.makepyfile(test_it="def test_a(seeded_llm):\n    seeded_llm.complete('Ça va? ' * 20)\n")
    suite.runpytest("--seedrepro-mode=record", "--snapshot-update").assert_outcomes(passed=1)
    (cassette,) = (suite.path / "cassettes").rglob("*.yaml")
    text = cassette.read_text(encoding="utf-8")
    data = yaml.load(text, Loader=yaml.SafeLoader)
    assert text == yaml.dump(data, Dumper=yaml.Dumper)  # PyYAML's pure-Python emitter
    assert "Gr\\xFC\\xDFe" in text  # the answer is in it, escaped as before


def test_ordinary_query_parameters_are_kept_and_credentials_dropped(
    suite: pytest.Pytester, llm_server: LLMServer, sentinel_key: str
) -> None:
    suite.makepyfile(
        test_it=f"""
        import openai

        def test_a(seeded_llm):
            client = openai.OpenAI(default_query={{
                "max_tokens": "7", "author": "ann", "keywords": "x,y", "api-key": "{sentinel_key}",
                "sessionToken": "{sentinel_key}",
            }})
            client.chat.completions.create(model="m", messages=[{{"role": "user", "content": "q"}}])
        """
    )
    suite.runpytest("--seedrepro-mode=record", "--snapshot-update").assert_outcomes(passed=1)
    assert sentinel_key in llm_server.requests[0].query  # sent, and dropped on the way to the file
    (cassette,) = (suite.path / "cassettes").rglob("*.yaml")
    text = cassette.read_text()
    assert sentinel_key not in text
    uri = yaml.safe_load(text)["interactions"][0]["request"]["uri"]
    assert uri.endswith("/chat/completions?max_tokens=7&author=ann&keywords=x%2Cy")
    llm_server.stop()
    suite.runpytest().assert_outcomes(passed=1)  # matched on the parameters kept


@pytest.mark.skipif(not hasattr(os, "umask") or os.name != "posix", reason="POSIX file modes")
def test_written_files_get_the_mode_of_any_new_file_and_keep_the_mode_they_had(
    suite: pytest.Pytester, tmp_path: Path
) -> None:
    # What open() would give a new file under this umask: a cassette, snapshot
    # or report is read by other users (a web server, a container, CI).
    old_umask = os.umask(0o022)
    try:
        probe = tmp_path / "probe"
        probe.write_text("")
        expected = stat.S_IMODE(probe.stat().st_mode)
        suite.makepyfile(test_modes="def test_it(seeded_llm):\n    seeded_llm.complete('hi')\n")
        result = suite.runpytest(
            "-p",
            "no:cacheprovider",
            "--seedrepro-mode=record",
            "--snapshot-update",
            "--seedrepro-report=report.json",
            "--seedrepro-html=report.html",
        )
        result.assert_outcomes(passed=1)
        written = [
            suite.path / "cassettes" / "test_modes" / "test_it.yaml",
            suite.path / "__snapshots__" / "test_modes" / "test_it.llm.yaml",
            suite.path / "report.json",
            suite.path / "report.html",
        ]
        assert {path.name: oct(stat.S_IMODE(path.stat().st_mode)) for path in written} == {
            path.name: oct(expected) for path in written
        }
        # A file the user gave a mode of its own keeps it when rewritten.
        cassette = written[0]
        cassette.chmod(0o600)
        suite.makepyfile(test_modes="def test_it(seeded_llm):\n    seeded_llm.complete('hello')\n")
        suite.runpytest("-p", "no:cacheprovider", "--seedrepro-mode=rerecord", "--snapshot-update")
        assert "hello" in cassette.read_text()  # written again ...
        assert oct(stat.S_IMODE(cassette.stat().st_mode)) == oct(0o600)  # ... with the mode it had
    finally:
        os.umask(old_umask)
