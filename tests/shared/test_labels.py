from ocrtune_shared.labels import parse_labels


def test_tsv_with_tabs_and_whitespace():
    rows, problems = parse_labels("a.png\t一二 三\n\n# comment\nb.png 四五\nc.png\t \n", ".tsv")
    assert [(r.line, r.image, r.text) for r in rows] == [(1, "a.png", "一二 三"), (4, "b.png", "四五")]
    assert [(p.line, p.message) for p in problems] == [(5, "empty text for image 'c.png'")]


def test_csv_with_header_in_any_order():
    rows, problems = parse_labels("text,image\n一,a.png\n,b.png\nonly\n", ".csv")
    assert [(r.line, r.image, r.text) for r in rows] == [(2, "a.png", "一")]
    assert [p.line for p in problems] == [3, 4]


def test_jsonl_reports_bad_lines():
    content = '{"image": "a.png", "text": "一"}\nnot json\n[1]\n{"file": "b.png", "text": 3}\n{"image_path": "c.png", "text": "二"}\n'
    rows, problems = parse_labels(content, ".jsonl")
    assert [(r.line, r.image) for r in rows] == [(1, "a.png"), (5, "c.png")]
    assert [p.line for p in problems] == [2, 3, 4]
    assert "not valid JSON" in problems[0].message
