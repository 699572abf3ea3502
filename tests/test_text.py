"""The UTF-8 / stop-string assembler, byte by byte (pure Python, no model needed)."""

from mullama_tui.engine.text import TextAssembler


def feed(a: TextAssembler, pieces: list[bytes]) -> list[str]:
    return [a.push(p).answer for p in pieces] + [a.flush().answer]


def test_multibyte_character_split_across_pieces_is_held_until_complete():
    data = "日本🌍".encode()
    out = feed(TextAssembler(), [data[i:i + 1] for i in range(len(data))])
    assert "".join(out) == "日本🌍"
    assert all("\ufffd" not in s for s in out)
    assert out[0] == "" and out[1] == "" and out[2] == "日"


def test_stop_string_spanning_pieces_is_never_emitted():
    a = TextAssembler(stop=["END"])
    out = [a.push(b"hello E").answer, a.push(b"N").answer, a.push(b"D more").answer]
    assert out == ["hello ", "", ""]
    assert a.stopped and a.flush().answer == ""


def test_partial_stop_match_is_released_when_it_turns_out_not_to_be_a_stop():
    a = TextAssembler(stop=["END"])
    assert a.push(b"an E").answer == "an "
    assert a.push(b"Nx").answer == "ENx"
    assert not a.stopped


def test_earliest_of_several_stop_strings_wins_and_tail_is_flushed():
    a = TextAssembler(stop=["\n\n", "###"])
    assert a.push(b"a ##").answer == "a "
    assert a.push(b"#x").answer == ""
    assert a.stopped and a.flush().answer == ""
    assert TextAssembler(stop=["b", "a"]).push(b"xab").answer == "x"
    b = TextAssembler(stop=["###"])
    assert b.push(b"x #").answer == "x "
    assert b.flush().answer == "#"


# -- thinking and answer ------------------------------------------------------------------

import pytest  # noqa: E402

from mullama_tui.engine.text import MAGISTRAL_TAGS, THINK_TAGS, ReasoningSplitter  # noqa: E402


def split_all(data: bytes, cuts: list[int], tags=THINK_TAGS, inside=False, stop=()) -> tuple[str, str, str]:
    a = TextAssembler(stop=stop, reasoning=ReasoningSplitter(tags, inside))
    answer, thinking, moved = [], [], []
    bounds = [0, *cuts, len(data)]
    for lo, hi in zip(bounds, bounds[1:]):
        s = a.push(data[lo:hi])
        answer.append(s.answer)
        thinking.append(s.thinking)
        moved.append(s.moved)
    s = a.flush()
    return "".join(answer) + s.answer, "".join(thinking) + s.thinking, "".join(moved)


@pytest.mark.parametrize("tags", [THINK_TAGS, MAGISTRAL_TAGS], ids=["think", "magistral"])
def test_tags_split_at_every_byte_position_never_leak(tags):
    data = f"{tags.open}\nLet me see: 2+2.\n{tags.close}\n\nIt is 4 — ✓.".encode()
    for cut in range(1, len(data)):
        answer, thinking, moved = split_all(data, [cut], tags)
        assert (answer, thinking, moved) == ("It is 4 — ✓.", "Let me see: 2+2.\n", ""), cut
    # and in pieces of one byte
    assert split_all(data, list(range(1, len(data))), tags)[:2] == ("It is 4 — ✓.", "Let me see: 2+2.\n")


def test_a_prompt_that_opened_the_block_starts_inside():
    data = b"Hmm, the user greets me.\n</think>\n\nHello!"
    for cut in range(1, len(data)):
        assert split_all(data, [cut], inside=True) == ("Hello!", "Hmm, the user greets me.\n", "")


def test_a_stray_closing_tag_means_everything_before_it_was_thinking():
    data = b"thinking without an opening tag</think>The answer."
    for cuts in ([10, 20, 33], [5], list(range(1, len(data)))):
        answer, thinking, moved = split_all(data, cuts)
        # what had gone out as answer before the tag comes back as `moved`: it was thinking
        assert answer == moved + "The answer."
        assert moved + thinking == "thinking without an opening tag"
    assert split_all(data, [10, 20, 33])[2]  # part of it had been released as answer


def test_text_that_only_looks_like_a_tag_stays_text():
    for text in ["<thinking> is not a tag", "a < think> b", "x <think", "<thin", "</thinker>", "[THINKER]"]:
        data = text.encode()
        for cut in range(1, len(data)):
            answer, thinking, _ = split_all(data, [cut])
            assert (answer, thinking) == (text.strip() if text.startswith(" ") else text, ""), (text, cut)


def test_no_tags_at_all_is_all_answer_and_stop_strings_apply_to_the_answer_only():
    assert split_all(b"plain answer", [3]) == ("plain answer", "", "")
    data = b"<think>a\n\nb</think>one\n\ntwo"
    assert split_all(data, [4, 9], stop=["\n\n"]) == ("one", "a\n\nb", "")  # no stop inside the thinking
