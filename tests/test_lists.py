"""The one list format of evaluate, train and features."""

from pathlib import Path

import pytest

from i3d.errors import I3DError
from i3d.lists import class_index, label_indices, read_classes_file, read_list


def test_rows_with_header_comments_spans_and_relative_paths(tmp_path):
    (tmp_path / "list.csv").write_text("path,label,start_s,end_s\n# a comment\n\na.mp4,yawning,1.5,4\n"
                                       "/abs/b.mp4,3,,\n")
    rows = read_list(tmp_path / "list.csv")
    assert [(r.path, r.label, r.start_s, r.end_s, r.line) for r in rows] == [
        (tmp_path / "a.mp4", "yawning", 1.5, 4.0, 4), (Path("/abs/b.mp4"), "3", None, None, 5)]


def test_a_spreadsheet_byte_order_mark_is_not_part_of_the_header(tmp_path):
    (tmp_path / "list.csv").write_bytes("\ufeffpath,label\na.mp4,yawning\n".encode())
    assert [r.label for r in read_list(tmp_path / "list.csv")] == ["yawning"]


@pytest.mark.parametrize(("text", "message"), [
    ("a.mp4,yawning,-1,4\n", "start -1.0 is not a time in the video"),
    ("a.mp4,yawning,nan,4\n", "start nan is not a time"),
    ("a.mp4,yawning,5,4\n", "end 4.0 is not after start 5.0"),
    ("a.mp4\n", "expected `path,label"),
    ("# only a comment\n", "lists no videos"),
    (",yawning\n", "the path is empty"),
])
def test_bad_rows_name_the_file_and_line(tmp_path, text, message):
    (tmp_path / "list.csv").write_text(text)
    with pytest.raises(I3DError, match=message) as caught:
        read_list(tmp_path / "list.csv")
    assert str(caught.value).startswith(str(tmp_path / "list.csv"))


def test_a_list_that_is_not_utf8_is_one_clear_error(tmp_path):
    (tmp_path / "list.csv").write_bytes(b"a.mp4,caf\xe9\n")
    with pytest.raises(I3DError, match="not UTF-8 text"):
        read_list(tmp_path / "list.csv")


def test_paths_only_lists_take_the_first_column(tmp_path):
    (tmp_path / "videos.txt").write_text("video\nx/a.mp4\nb.mp4,ignored\n")
    assert [r.path for r in read_list(tmp_path / "videos.txt", labelled=False)] == [tmp_path / "x/a.mp4",
                                                                                     tmp_path / "b.mp4"]


def test_labels_match_by_name_case_underscores_or_index():
    classes = ["riding a bike", "yawning", "3"]
    assert class_index("riding a bike", classes) == 0
    assert class_index("Riding_A_Bike", classes) == 0
    assert class_index("3", classes) == 2  # an exact name wins over an index
    assert class_index("1", classes) == 1
    assert class_index("swimming", classes) is None


def test_unknown_labels_are_named_together(tmp_path):
    (tmp_path / "list.csv").write_text("a.mp4,swimming\nb.mp4,yawning\nc.mp4,diving\n")
    rows = read_list(tmp_path / "list.csv")
    with pytest.raises(I3DError, match=r"'swimming' \(line 1\), 'diving' \(line 3\)"):
        label_indices(tmp_path / "list.csv", rows, ["yawning"])


@pytest.mark.parametrize(("content", "message"), [("", "lists no class names"), ("a\nb\na\n", "'a' is listed twice")])
def test_classes_files_must_name_distinct_classes(tmp_path, content, message):
    (tmp_path / "classes.txt").write_text(content)
    with pytest.raises(I3DError, match=message):
        read_classes_file(tmp_path / "classes.txt")
    with pytest.raises(I3DError, match="no such classes file"):
        read_classes_file(tmp_path / "absent.txt")


def _train(tmp_path, capsys, list_text):
    from i3d.cli.main import main

    (tmp_path / "train.csv").write_text(list_text)
    code = main(["train", "--train", str(tmp_path / "train.csv"), "--steps", "1", "--output", str(tmp_path / "run")])
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())  # nothing written
    err = capsys.readouterr().err.strip().splitlines()
    return code, err[-1]


def test_a_training_list_no_row_of_which_is_usable_names_the_list_line_and_cause(tmp_path, capsys):
    code, line = _train(tmp_path, capsys, "clips/a.mp4,x\nclips/b.mp4,y\n")
    assert code == 2
    assert line.startswith(f"i3d: error: {tmp_path / 'train.csv'}:1: 2 of 2 videos of the list cannot be used; "
                           f"none of these paths exists: relative paths are read from the list's folder ({tmp_path})")
    code, line = _train(tmp_path, capsys, "name,label\nclips/a.mp4,x\n")
    assert code == 2 and "its first row ('name') looks like a header taken for data" in line


def test_a_charades_list_without_its_actions_column_is_refused_by_its_header(tmp_path, capsys):
    code, line = _train(tmp_path, capsys, "id,subject,scene\nAB12C,s1,kitchen\n")
    assert code == 2
    assert line == (f"i3d: error: {tmp_path / 'train.csv'}: a Charades list (its header has an `id` column) needs its "
                    "`actions` column (`class start end;...`); a plain list is `path,label[,start_s,end_s]`")


@pytest.mark.parametrize("name", ["no\nwhere.mp4", "tab\there.mp4", "carriage\rreturn.mp4"])
def test_odd_names_stay_on_one_line_in_every_message(tmp_path, capsys, name):
    from i3d.cli.main import main

    path = tmp_path / name
    assert main(["predict", str(path)]) == 2
    err = capsys.readouterr().err
    escaped = str(path).replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")
    assert err.splitlines()[-1] == f"i3d: error: {escaped}: no such file or folder"  # one line, its last
