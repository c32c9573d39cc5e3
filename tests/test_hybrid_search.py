"""Hybrid search: the words of names, folders and tags (one tokenizer, BM25, in resound's code) fused with
the vector ranking; the same answers on SQLite and Postgres; whatever a user types is safe."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from db.fulltext import document_terms, fuse, query_terms, tokens
from indexer import BuildOptions, Index, build_index
from search.engine import Engine
from tests import helpers
from tests.test_library_tags import write_bwf

RATE = 16000


def test_names_split_at_punctuation_camel_case_and_digits() -> None:
    assert tokens("DOOR Wood Creak Open 03.wav") == ["door", "wood", "creak", "open", "3", "wav"]
    assert tokens("dog_barking-loud.v2") == ["dog", "bark", "loud", "v", "2"]
    assert tokens("HTTPServer camelCaseName ZOOM0042") == ["http", "server", "camel", "case", "name", "zoom", "42"]
    assert tokens("Café crème, glasses & boxes; running") == ["cafe", "creme", "glass", "box", "run"]
    assert tokens('"hi-hat" AND (kick OR NOT snare') == ["hi", "hat", "kick", "not", "snare"]  # and/or: stop words
    assert document_terms("Foley/Doors/DOOR_Wood_Creak_03.wav", {"description": "Old oak door creaks"}) == {
        "door": 3, "wood": 1, "creak": 2, "3": 1, "foley": 1, "old": 1, "oak": 1}
    assert query_terms("door DOORS doors") == ["door"]


def test_text_without_spaces_is_cut_into_character_pairs() -> None:
    # Chinese and Japanese write no spaces between words: a run of their characters is one letter run, cut
    # into overlapping pairs; a document also keeps each character (a one-character word: 犬, dog).
    assert query_terms("日本語") == ["日本", "本語"]
    assert query_terms("日本語の音.wav") == ["日本", "本語", "語の", "の音", "wav"]
    assert query_terms("犬") == ["犬"]
    assert document_terms("効果音/犬の鳴き声_01.wav", {}) == {
        "犬": 1, "の": 1, "鳴": 1, "き": 1, "声": 1, "犬の": 1, "の鳴": 1, "鳴き": 1, "き声": 1, "1": 1,
        "効": 1, "果": 1, "音": 1, "効果": 1, "果音": 1}
    # Mixed scripts split where the script changes; kana keep their voicing marks (が is not か).
    assert tokens("ドア開閉SE_がた", query=True) == ["ドア", "ア開", "開閉", "se", "がた"]
    assert tokens("한국어 소리", query=True) == ["한국", "국어", "소리"]


def test_reciprocal_rank_fusion() -> None:
    assert fuse([[1, 2, 3], [3, 4]], k=60) == [(3, 1 / 63 + 1 / 61), (1, 1 / 61), (2, 1 / 62), (4, 1 / 62)]
    # Tied keyword scores share a rank, so the sound's order decides among them (the demo corpus: every
    # church_organ_* file matches "organ" alike, and the best-sounding one must stay first).
    assert fuse([[7, 8, 9], [9, 8, 7]], k=60, scores=[None, [2.0, 2.0, 2.0]]) == [
        (7, 1 / 61 + 1 / 61), (8, 1 / 62 + 1 / 61), (9, 1 / 63 + 1 / 61)]
    assert fuse([[7, 8], [8, 7]], k=60, scores=[None, [3.0, 2.0]])[0][0] == 7  # no tie: ranks 1 and 2


@pytest.fixture
def library(tmp_path: Path, tone_model: Path, catalog_url: str | None) -> tuple[Path, Path, str | None]:
    """Half named as a sound library names its files, half as a field recorder does; the tone encoder
    hears each file's pitch (440 Hz: "dog" in this little world)."""
    corpus = tmp_path / "library"
    named = {"Animals/DOG_Bark_Big_01.wav": 220, "Animals/DogBarkSmall02.wav": 330, "Foley/Door Creak.wav": 660,
             "Ambience/Birds Morning Chorus.wav": 880}
    for name, pitch in named.items():
        helpers.write_audio(corpus / name, helpers.tone(pitch, 2.0, rate=RATE), RATE)
    write_bwf(corpus / "Foley/F0001.wav", helpers.tone(880, 2.0, rate=RATE), "Old oak door creaks open slowly",
              "J. Roe", [])
    for n, pitch in enumerate((440, 440, 220, 660)):
        helpers.write_audio(corpus / f"field/ZOOM{n:04d}.WAV", helpers.tone(pitch, 2.0, rate=RATE), RATE)
    build_index(corpus, tmp_path / "index", BuildOptions(model=str(tone_model), decode_workers=0, db_url=catalog_url))
    return corpus, tmp_path / "index", catalog_url


def _answer(engine: Engine, text: str, mode: str, **kwargs: object) -> list[tuple]:
    return [(h.relative_path, h.matched, None if h.keyword_score is None else round(h.keyword_score, 9),
             None if h.fused_score is None else round(h.fused_score, 12), round(h.score, 6), h.start)
            for h in engine.query(text, k=20, mode=mode, **kwargs)]


def test_words_and_sound_together(library) -> None:  # type: ignore[no-untyped-def]
    _corpus, index, db_url = library
    engine = Engine(index, db_url=db_url, device="cpu")
    try:
        words = engine.query("dog barking", k=10, mode="keyword")
        assert [(h.relative_path, h.matched) for h in words] == [
            ("Animals/DOG_Bark_Big_01.wav", ("dog", "bark")), ("Animals/DogBarkSmall02.wav", ("dog", "bark"))] or \
            [(h.relative_path, h.matched) for h in words] == [
            ("Animals/DogBarkSmall02.wav", ("dog", "bark")), ("Animals/DOG_Bark_Big_01.wav", ("dog", "bark"))]
        # The embedded description is searched too; the matching file's best window is its score.
        door = engine.query("oak door", k=10, mode="keyword")
        assert [(h.relative_path, h.matched) for h in door] == [("Foley/F0001.wav", ("oak", "door")),
                                                                  ("Foley/Door Creak.wav", ("door",))]
        assert door[0].tags["description"] == "Old oak door creaks open slowly"
        # Hybrid: the two field recordings that sound like a dog (440 Hz) and the two files named so.
        hybrid = engine.query("dog 440", k=4, mode="hybrid")
        assert {h.relative_path for h in hybrid} == {"Animals/DOG_Bark_Big_01.wav", "Animals/DogBarkSmall02.wav",
                                                      "field/ZOOM0000.WAV", "field/ZOOM0001.WAV"}
        by_name = {h.relative_path: h for h in hybrid}
        assert by_name["field/ZOOM0000.WAV"].matched == () and by_name["field/ZOOM0000.WAV"].score == pytest.approx(1.0)
        assert by_name["Animals/DOG_Bark_Big_01.wav"].matched == ("dog",)
        assert all(h.fused_score is not None for h in hybrid)
        assert [h.fused_score for h in hybrid] == sorted((h.fused_score for h in hybrid), reverse=True)
        # A filter narrows the words' list too.
        from db.filters import SearchFilter

        assert [h.relative_path for h in engine.query("door", k=5, mode="keyword",
                                                      where=SearchFilter.parse(glob="*Creak*"))] == ["Foley/Door Creak.wav"]
        # The vector mode is the engine's default and knows no words.
        assert engine.query("dog 440", k=3) == engine.query("dog 440", k=3, mode="vector")
        assert all(h.matched == () and h.fused_score is None for h in engine.query("dog 440", k=3))
    finally:
        engine.close()


def test_bm25_score_is_exact(library) -> None:  # type: ignore[no-untyped-def]
    """BM25 (k1 1.2, b 0.75) over 9 files: 'oak' is in one file of 7 terms."""
    corpus, index, db_url = library
    engine = Engine(index, db_url=db_url, device="cpu")
    try:
        hit = engine.query("oak", k=5, mode="keyword")
        assert [h.relative_path for h in hit] == ["Foley/F0001.wav"]
        f0001 = document_terms("Foley/F0001.wav", {"description": "Old oak door creaks open slowly",
                                                   "originator": "J. Roe"})
        total = sum(sum(document_terms(str(p.relative_to(corpus)), {}).values()) for p in corpus.rglob("*.*")
                    if p.name != "F0001.wav") + sum(f0001.values())
        average = total / 9
        idf = math.log(1 + (9 - 1 + 0.5) / (1 + 0.5))
        norm = 1.2 * (1 - 0.75 + 0.75 * sum(f0001.values()) / average)
        assert hit[0].keyword_score == pytest.approx(idf * 1 * 2.2 / (1 + norm), rel=1e-9)
    finally:
        engine.close()


HOSTILE = ['"hi-hat"', "hi-hat", "AND", "dog AND (bark OR NOT", ")))", "(((", "'", '"', "*", "NEAR(dog bark)",
           "dog:bark", "-dog", "^door", "door*", "\\", "%_%", "; DROP TABLE files; --", "∂øg", "\x00dog", "🐕 dog"]


def test_whatever_a_user_types_is_safe(library) -> None:  # type: ignore[no-untyped-def]
    _corpus, index, db_url = library
    engine = Engine(index, db_url=db_url, device="cpu")
    try:
        for text in HOSTILE:
            for mode in ("keyword", "hybrid"):
                hits = engine.query(text, k=3, mode=mode)
                assert all(set(h.matched) <= set(query_terms(text)) for h in hits), text
        assert [h.relative_path for h in engine.query("hi-hat door", k=1, mode="keyword")] == ["Foley/Door Creak.wav"]
        assert engine.query("-dog", k=10, mode="keyword")[0].matched == ("dog",)  # a hyphen is no NOT
    finally:
        engine.close()


def test_a_japanese_name_is_found_by_a_word_inside_it(tmp_path: Path, tone_model: Path) -> None:
    corpus = tmp_path / "library"
    for name, pitch in {"効果音/日本語の音.wav": 220, "効果音/犬の鳴き声_01.wav": 440, "効果音/猫の鳴き声_02.wav": 660,
                        "Foley/Door Creak.wav": 880}.items():
        helpers.write_audio(corpus / name, helpers.tone(pitch, 2.0, rate=RATE), RATE)
    build_index(corpus, tmp_path / "index", BuildOptions(model=str(tone_model), decode_workers=0))
    engine = Engine(tmp_path / "index", device="cpu")
    try:
        def found(text: str) -> list[tuple[str, tuple[str, ...]]]:
            return [(h.relative_path, h.matched) for h in engine.query(text, k=10, mode="keyword")]

        assert found("日本語") == [("効果音/日本語の音.wav", ("日本", "本語"))]
        assert found("犬") == [("効果音/犬の鳴き声_01.wav", ("犬",))]
        assert [path for path, _ in found("鳴き声")] == ["効果音/犬の鳴き声_01.wav", "効果音/猫の鳴き声_02.wav"] or \
            [path for path, _ in found("鳴き声")] == ["効果音/猫の鳴き声_02.wav", "効果音/犬の鳴き声_01.wav"]
        assert found("猫 鳴き声")[0] == ("効果音/猫の鳴き声_02.wav", ("猫", "鳴き", "き声"))
        assert len(found("効果音")) == 3  # the folder's name
    finally:
        engine.close()


def test_keyword_and_hybrid_answers_are_equal_on_sqlite_and_postgres(tmp_path: Path, tone_model: Path,
                                                                    postgres_url: str) -> None:
    corpus = tmp_path / "library"
    for name, pitch in {"Animals/DOG_Bark_Big_01.wav": 220, "Animals/DogBarkSmall02.wav": 440, "Foley/Door Creak.wav": 660,
                        "field/ZOOM0000.WAV": 440, "field/ZOOM0001.WAV": 880, "dog/dog dog.wav": 330,
                        "効果音/犬の鳴き声_01.wav": 550, "効果音/日本語の音.wav": 770}.items():
        helpers.write_audio(corpus / name, helpers.tone(pitch, 2.0, rate=RATE), RATE)
    answers = []
    for name, url in (("sqlite", None), ("postgres", postgres_url)):
        build_index(corpus, tmp_path / name, BuildOptions(model=str(tone_model), decode_workers=0, db_url=url))
        engine = Engine(tmp_path / name, db_url=url, device="cpu")
        try:
            answers.append([_answer(engine, text, mode) for text in ("dog bark 440", "door", "dog", "hi-hat", "犬",
                                                                     "日本語 鳴き声")
                            for mode in ("keyword", "hybrid")])
        finally:
            engine.close()
    assert answers[0] == answers[1]
    assert answers[0][4][0][:2] == ("dog/dog dog.wav", ("dog",))  # three dogs: the highest BM25
    assert answers[0][8][0][:2] == ("効果音/犬の鳴き声_01.wav", ("犬",))


def test_the_keyword_index_follows_renames_and_removals_and_verify_checks_it(tmp_path: Path, tone_model: Path) -> None:
    from indexer.verify import repair_index, verify_index

    corpus = tmp_path / "c"
    helpers.write_audio(corpus / "rain on roof.wav", helpers.tone(440, 2.0, rate=RATE), RATE)
    helpers.write_audio(corpus / "thunder.wav", helpers.tone(220, 2.0, rate=RATE), RATE)
    options = BuildOptions(model=str(tone_model), decode_workers=0)
    build_index(corpus, tmp_path / "index", options)
    shutil.move(corpus / "rain on roof.wav", corpus / "hail on tin.wav")  # same bytes: a move in the catalog
    (corpus / "thunder.wav").unlink()
    build_index(corpus, tmp_path / "index", options)
    engine = Engine(tmp_path / "index", device="cpu")
    try:
        assert engine.query("rain thunder", k=5, mode="keyword") == []
        assert [h.relative_path for h in engine.query("hail", k=5, mode="keyword")] == ["hail on tin.wav"]
    finally:
        engine.close()
    assert verify_index(tmp_path / "index").ok
    index = Index(tmp_path / "index")
    with index.catalog.engine.begin() as c:  # words out of step, as a hand edit or a bug would leave them
        c.exec_driver_sql("UPDATE file_terms SET term = 'snow' WHERE term = 'hail'")
    index.close()
    report = verify_index(tmp_path / "index")
    assert not report.ok and any(p.startswith("keyword index: 1 files") for p in report.problems)
    repair_index(tmp_path / "index")
    assert verify_index(tmp_path / "index").ok
    engine = Engine(tmp_path / "index", device="cpu")
    try:
        assert [h.relative_path for h in engine.query("hail", k=5, mode="keyword")] == ["hail on tin.wav"]
    finally:
        engine.close()


def test_cli_and_http_default_to_hybrid(library, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import httpx

    from search.cli import main
    from search.service import BackgroundServer, ServiceConfig, create_app
    from tests.service_support import tone_environment

    _corpus, index, db_url = library
    db = ["--db", db_url] if db_url else []
    runner = CliRunner()
    result = runner.invoke(main, ["query", "dog 440", "--index", str(index), *db, "-k", "4", "--json"])
    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout)
    assert {"matched_words", "keyword_score", "fused_score", "score"} <= set(hits[0])
    assert all(h["fused_score"] is not None for h in hits)
    result = runner.invoke(main, ["query", "dog 440", "--index", str(index), *db, "-k", "4", "--mode", "vector", "--json"])
    assert all(h["matched_words"] == [] and h["fused_score"] is None for h in json.loads(result.stdout))
    result = runner.invoke(main, ["query", "oak door", "--index", str(index), *db, "--mode", "keyword", "--show"])
    assert "      words: oak, door" in result.stdout.splitlines()
    with tone_environment(tmp_path / "cache"), BackgroundServer(create_app(index, ServiceConfig(), db_url=db_url)) as server, \
            httpx.Client(base_url=server.url, timeout=30) as client:
        body = client.get("/api/query", params={"q": "dog 440", "k": 4}).json()
        assert all(h["fused_score"] is not None for h in body["hits"])
        body = client.get("/api/query", params={"q": 'hi-hat AND ("door', "mode": "keyword"}).json()
        assert [h["matched_words"] for h in body["hits"]] == [["door"], ["door"]]
        assert client.get("/api/query", params={"q": "x", "mode": "bm25"}).status_code == 422


def test_the_table_says_why_scores_do_not_fall_with_the_rank() -> None:
    """Hybrid ranks by words and sound while `score` stays the cosine: a table whose scores rise down the
    ranks says why in one note; a vector search (scores falling) or a falling hybrid answer says nothing."""
    from search.engine import Hit
    from search.output import ranking_note

    def hit(rank: int, score: float, fused: float | None) -> Hit:
        return Hit(rank, f"/c/{rank}.wav", 0.0, 4.0, score, rank, rank, fused_score=fused)

    rising = [hit(1, 0.35, 0.032), hit(2, 0.26, 0.031), hit(3, 0.45, 0.030)]
    assert ranking_note(rising).startswith("ranked by the words of names, folders and tags with the sound")
    assert ranking_note([hit(1, 0.45, 0.032), hit(2, 0.35, 0.031)]) is None
    assert ranking_note([hit(1, 0.35, None), hit(2, 0.45, None)]) is None  # vector hits never carry fused scores
