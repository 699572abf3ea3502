"""The UTF-8 / stop-string assembler, byte by byte (pure Python, no model needed)."""

from mullama_tui.engine.text import TextAssembler


def feed(a: TextAssembler, pieces: list[bytes]) -> list[str]:
    return [a.push(p) for p in pieces] + [a.flush()]


def test_multibyte_character_split_across_pieces_is_held_until_complete():
    data = "日本🌍".encode()
    out = feed(TextAssembler(), [data[i:i + 1] for i in range(len(data))])
    assert "".join(out) == "日本🌍"
    assert all("\ufffd" not in s for s in out)
    assert out[0] == "" and out[1] == "" and out[2] == "日"


def test_stop_string_spanning_pieces_is_never_emitted():
    a = TextAssembler(stop=["END"])
    out = [a.push(b"hello E"), a.push(b"N"), a.push(b"D more")]
    assert out == ["hello ", "", ""]
    assert a.stopped and a.flush() == ""


def test_partial_stop_match_is_released_when_it_turns_out_not_to_be_a_stop():
    a = TextAssembler(stop=["END"])
    assert a.push(b"an E") == "an "
    assert a.push(b"Nx") == "ENx"
    assert not a.stopped


def test_earliest_of_several_stop_strings_wins_and_tail_is_flushed():
    a = TextAssembler(stop=["\n\n", "###"])
    assert a.push(b"a ##") == "a "
    assert a.push(b"#x") == ""
    assert a.stopped and a.flush() == ""
    assert TextAssembler(stop=["b", "a"]).push(b"xab") == "x"
    b = TextAssembler(stop=["###"])
    assert b.push(b"x #") == "x "
    assert b.flush() == "#"
