"""Loaders of text-only multi-hop QA files: each dataset's release format, FlashRAG, prediction files."""

from __future__ import annotations

import json

import pytest
from shared_helpers import write_rows

from arft_envs.errors import DatasetError
from arft_envs.tasks.multihop import load_multihop

# ----------------------------------------------------------------------------- fixtures
# Tiny files in each dataset's standard release format (made-up content).

HOTPOT = [
    {
        "_id": "5a8b57f25542995d1e6f1371",
        "question": "Which city is the birthplace of the founder of Quorvane?",
        "answer": "Telmoria",
        "type": "bridge",
        "level": "hard",
        "supporting_facts": [["Quorvane", 0], ["Aldric Venhollow", 1]],
        "context": [
            ["Quorvane", ["Quorvane is a robotics company", " founded by Aldric Venhollow."]],
            ["Aldric Venhollow", ["Aldric Venhollow is an engineer.", " He was born in Telmoria."]],
            ["Brisk Harbour", ["Brisk Harbour is a fishing town."]],
        ],
    },
    {
        "_id": "5a8c7595554299585d9e36b6",
        "question": "Were Quorvane and Zephtra founded in the same year?",
        "answer": "no",
        "type": "comparison",
        "level": "medium",
        "supporting_facts": [["Quorvane", 0], ["Zephtra", 0]],
        "context": [
            ["Quorvane", ["Quorvane is a robotics company", " founded by Aldric Venhollow."]],
            ["Zephtra", ["Zephtra is a synthesizer maker founded in 1990."]],
        ],
    },
]

TWOWIKI = [
    {
        "_id": "8813f87c0bdd11eba7f7acde48001122",
        "type": "compositional",
        "question": "Who is the mother of the director of film Glass Orchard?",
        "context": [
            ["Glass Orchard", ["Glass Orchard is a 1994 film directed by Ines Marrow."]],
            ["Ines Marrow", ["Ines Marrow is a director.", "Her mother is Petra Marrow."]],
        ],
        "supporting_facts": [["Glass Orchard", 0], ["Ines Marrow", 1]],
        "evidences": [
            ["Glass Orchard", "director", "Ines Marrow"],
            ["Ines Marrow", "mother", "Petra Marrow"],
        ],
        "answer": "Petra Marrow",
    }
]

MUSIQUE = [
    {
        "id": "2hop__131818_161450",
        "paragraphs": [
            {
                "idx": 0,
                "title": "Green",
                "paragraph_text": "Green is an album by Steve Hale.",
                "is_supporting": True,
            },
            {
                "idx": 1,
                "title": "Steve Hale",
                "paragraph_text": "Steve Hale married Mira Gold.",
                "is_supporting": True,
            },
            {
                "idx": 2,
                "title": "Blue",
                "paragraph_text": "Blue is an album by someone else.",
                "is_supporting": False,
            },
        ],
        "question": "Who is the spouse of the Green performer?",
        "question_decomposition": [
            {
                "id": 131818,
                "question": "Green >> performer",
                "answer": "Steve Hale",
                "paragraph_support_idx": 0,
            },
            {
                "id": 161450,
                "question": "#1 >> spouse",
                "answer": "Mira Gold",
                "paragraph_support_idx": 1,
            },
        ],
        "answer": "Mira Gold",
        "answer_aliases": ["Mira Hale"],
        "answerable": True,
    },
    {
        "id": "2hop__unanswerable",
        "paragraphs": [
            {"idx": 0, "title": "X", "paragraph_text": "Nothing here.", "is_supporting": False}
        ],
        "question": "Who?",
        "question_decomposition": [],
        "answer": "Nobody",
        "answer_aliases": [],
        "answerable": False,
    },
]

BAMBOOGLE_CSV = (
    "Question,Answer\n"
    '"Who was president of the United States in the year that Citibank was founded?",james madison\n'
    '"What is the capital of the country where the Zephtra is made?",Telmoria\n'
)

FLASHRAG = [
    {
        "id": "test_0",
        "question": "Who founded Quorvane?",
        "golden_answers": ["Aldric Venhollow", "A. Venhollow"],
    },
    {
        "id": "test_1",
        "question": "Where is Telmoria?",
        "golden_answers": ["Valdoria"],
        "metadata": {},
    },
]


# ----------------------------------------------------------------------------- formats


def test_hotpotqa_builds_a_pooled_corpus_with_gold_documents(tmp_path):
    tasks, corpus = load_multihop(write_rows(tmp_path / "hotpot_dev.json", HOTPOT), "hotpotqa")
    assert [t.id for t in tasks] == [HOTPOT[0]["_id"], HOTPOT[1]["_id"]]
    assert tasks[0].answers == ["Telmoria"] and tasks[0].images == []
    assert len(corpus) == 4  # "Quorvane" appears in both rows, kept once
    by_url = {d.url: d for d in corpus}
    gold = tasks[0].meta["gold_docs"]
    assert [by_url[u[0]].title for u in gold] == ["Quorvane", "Aldric Venhollow"]
    assert by_url[gold[1][0]].text == "Aldric Venhollow is an engineer. He was born in Telmoria."
    assert tasks[0].meta["corpus"] is corpus is tasks[1].meta["corpus"]
    assert tasks[1].meta["type"] == "comparison"
    assert "gold_queries" not in tasks[0].meta


def test_hf_datasets_context_layout(tmp_path):
    row = dict(HOTPOT[0])
    row["context"] = {
        "title": [c[0] for c in HOTPOT[0]["context"]],
        "sentences": [c[1] for c in HOTPOT[0]["context"]],
    }
    row["supporting_facts"] = {"title": ["Quorvane", "Aldric Venhollow"], "sent_id": [0, 1]}
    tasks, corpus = load_multihop(write_rows(tmp_path / "hf.jsonl", [row]), "hotpotqa")
    assert len(corpus) == 3 and len(tasks[0].meta["gold_docs"]) == 2


def test_2wiki_evidences_become_gold_queries(tmp_path):
    tasks, corpus = load_multihop(write_rows(tmp_path / "dev.json", TWOWIKI), "2wiki")
    assert tasks[0].meta["gold_queries"] == ["Glass Orchard director", "Ines Marrow mother"]
    assert len(tasks[0].meta["gold_docs"]) == 2 and len(corpus) == 2


def test_musique_decomposition_and_aliases(tmp_path):
    tasks, corpus = load_multihop(
        write_rows(tmp_path / "musique_ans_dev.jsonl", MUSIQUE), "musique"
    )
    assert len(tasks) == 1  # the unanswerable row is skipped
    (task,) = tasks
    assert task.answers == ["Mira Gold", "Mira Hale"]
    assert task.meta["gold_queries"] == ["Green performer", "Steve Hale spouse"]
    titles = {d.url: d.title for d in corpus}
    assert [titles[u[0]] for u in task.meta["gold_docs"]] == ["Green", "Steve Hale"]


def test_bamboogle_csv_and_flashrag_have_no_corpus(tmp_path):
    csv_path = tmp_path / "bamboogle.csv"
    csv_path.write_text(BAMBOOGLE_CSV)
    tasks, corpus = load_multihop(csv_path, "bamboogle")
    assert corpus is None and len(tasks) == 2
    assert tasks[0].answers == ["james madison"] and tasks[0].id == "0"
    tasks, corpus = load_multihop(write_rows(tmp_path / "test.jsonl", FLASHRAG), "bamboogle")
    assert corpus is None
    assert tasks[0].answers == ["Aldric Venhollow", "A. Venhollow"] and tasks[1].id == "test_1"
    tasks, _ = load_multihop(tmp_path / "test.jsonl", limit=1)
    assert len(tasks) == 1 and tasks[0].meta["source"] == "test"


@pytest.mark.parametrize(
    ("filename", "count"),
    [
        ("7b_step200_2wiki_web_n4.json", 12576),
        ("7b_step200_hotpotqa_web_n4.json", 7405),
        ("7b_step200_musique_web_n4.json", 2417),
        ("7b_step200_bamboogle_web_n4.json", 125),
    ],
)
def test_reference_prediction_files_load(shared_data, filename, count):
    path = shared_data / "reference_predictions" / filename
    tasks, corpus = load_multihop(path)
    rows = json.loads(path.read_text())
    assert len(tasks) == count and corpus is None
    assert tasks[0].question == rows[0]["query"]
    gt = rows[0]["gt"]
    assert tasks[0].answers == (gt if isinstance(gt, list) else [gt])


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("content", "pattern"),
    [
        ('[{"question": "q"}]', r"bad.json: row 0: missing gold answer"),
        ('[{"answer": "a"}]', r"row 0: missing field; expected one of \['question', 'query'\]"),
        ('[{"question": "q", "answer": {"x": 1}}]', r"row 0: field 'answer': expected a string"),
        ('[{"question": "q", "answer": "a", "context": 5}]', r"row 0: field 'context'"),
        (
            '[{"question": "q", "answer": "a", "paragraphs": [{"title": "t"}]}]',
            r"paragraph 0 needs",
        ),
        ("[1, 2]", r"row 0: expected an object"),
        ('[{"question": "q", "answer": "a"', r"bad.json: not valid JSON"),
    ],
)
def test_bad_json_names_file_row_and_field(tmp_path, content, pattern):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(DatasetError, match=pattern):
        load_multihop(path)


def test_bad_jsonl_names_the_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"question": "q", "golden_answers": ["a"]}\n{oops\n')
    with pytest.raises(DatasetError, match=r"bad.jsonl: row line 2: not valid JSON Lines"):
        load_multihop(path)
    with pytest.raises(DatasetError, match="file not found"):
        load_multihop(tmp_path / "absent.json")
    with pytest.raises(ValueError, match="dataset must be one of"):
        load_multihop(path, "triviaqa")
