"""Line, block and comment rules of ldirectord's read_config (reference §1.1, configs/README)."""

from __future__ import annotations

from ldirectord.config.lexer import BlockEnd, GlobalLine, VirtualBlock, lex, split_lines
from tests.unit.test_config_support import cfg, lines, messages, problems

V = "virtual=10.0.0.1:80"
R1 = "    real=10.0.0.2:80 gate"


def test_split_on_newline_only_and_keep_carriage_returns() -> None:
    source = split_lines("a\r\nb\x0bc\nlast-without-newline")
    assert [line.raw for line in source] == ["a\r", "b\x0bc", "last-without-newline"]
    assert [line.number for line in source] == [1, 2, 3]


def test_blank_line_ends_a_block_and_the_next_line_is_global() -> None:
    items = lex(split_lines(lines(V, R1, "", "    real=10.0.0.3:80 gate")))
    block = items[0]
    assert isinstance(block, VirtualBlock)
    assert block.ended_by is BlockEnd.BLANK and block.end_line == 3
    assert isinstance(items[1], GlobalLine)
    found = problems(V, R1, "", "    real=10.0.0.3:80 gate")
    assert found[0].location.line == 4
    assert found[0].message == 'Unknown command "real=10.0.0.3:80 gate"'
    assert "a blank line ends a virtual block: line 3" in (found[0].hint or "")


def test_short_indent_ends_the_block_with_a_hint() -> None:
    found = problems(V, R1, "   real=10.0.0.3:80 gate")
    assert found[0].location.line == 3
    assert "at least 4 spaces or a tab" in (found[0].hint or "")


def test_tab_counts_as_four_spaces_and_space_tab_mixes_work() -> None:
    config = cfg(
        V, "\treal=10.0.0.2:80 gate", " \treal=10.0.0.3:80 gate", "  \t real=10.0.0.4 gate"
    )
    assert [r.address for r in config.virtuals[0].reals] == ["10.0.0.2", "10.0.0.3", "10.0.0.4"]


def test_full_line_comments_never_end_a_block_even_in_column_0() -> None:
    config = cfg(
        V, R1, "# a banner", "#    real=10.0.0.9:80 gate", "  # indented", R1.replace("2", "3")
    )
    assert len(config.virtuals[0].reals) == 2


def test_hash_to_end_of_line_is_stripped_inside_blocks() -> None:
    config = cfg(V, "    real=10.0.0.2:80 gate 3  # weight three", "    scheduler=rr # round robin")
    virtual = config.virtuals[0]
    assert virtual.reals[0].weight == 3
    assert virtual.scheduler == "rr"


def test_hash_inside_quotes_is_stripped_too() -> None:
    found = problems(V, '    receive="a#b"')
    assert found[0].message == 'Unknown command "receive="a"'
    assert "double quotes" in (found[0].hint or "")


def test_trailing_blanks_left_by_comment_stripping_break_yes_no() -> None:
    found = problems(V, "    quiescent = no   # c")
    assert found[0].message == "quiescent must be 'yes' or 'no'"
    assert "blanks after the value" in (found[0].hint or "")


def test_global_lines_keep_trailing_comments() -> None:
    found = problems("quiescent=no  # comment")
    assert found[0].message == "quiescent must be 'yes' or 'no'"
    assert found[0].hint == "global lines keep trailing comments: remove '# ...'"
    assert str(found[0].location) == "t.cf:1:11"


def test_numeric_global_with_trailing_comment_passes() -> None:
    assert cfg("checktimeout=3 # seconds").globals.checktimeout == 3


def test_a_lone_tab_line_ends_a_block_silently_but_five_spaces_do_not() -> None:
    assert len(cfg(V, R1, "\t").virtuals) == 1
    assert messages(V, R1, "     ") == ['Unknown command ""']


def test_consecutive_virtual_lines_each_open_a_block() -> None:
    config = cfg(V, R1, "virtual=10.0.0.1:443", "    real=10.0.0.2:443 gate", "virtual=7", R1)
    assert [v.name for v in config.virtuals] == ["10.0.0.1:80", "10.0.0.1:443", "7"]


def test_virtual_inside_a_block_must_be_in_column_0() -> None:
    found = problems(V, "    virtual=10.0.0.1:443")
    assert found[0].hint == "virtual= must start in column 0"


def test_global_lines_must_start_in_column_0() -> None:
    found = problems("  checktimeout=3")
    assert found[0].message == 'Unknown command "checktimeout=3"'
    assert str(found[0].location) == "t.cf:1:3"


def test_blank_and_whitespace_only_global_lines_are_skipped() -> None:
    assert cfg("", "   ", "\t", "# c", "   # c").virtuals == ()


def test_crlf_file_fails_with_a_dos2unix_hint() -> None:
    found = problems("checktimeout=3\r", "quiescent=no\r", V + "\r", R1 + "\r")
    assert [p.message for p in found] == ["quiescent must be 'yes' or 'no'"]
    assert "dos2unix" in (found[0].hint or "")


def test_tabs_inside_values_become_four_spaces_in_blocks() -> None:
    assert cfg(V, "    servicename=a\tb").virtuals[0].servicename == "a    b"


def test_directive_names_are_case_sensitive() -> None:
    found = problems("Quiescent=no")
    assert found[0].message == 'Unknown command "Quiescent=no"'
    assert found[0].hint == "directive names are lowercase: quiescent"


def test_spaces_around_equals_are_allowed() -> None:
    config = cfg("autoreload = yes", "virtual = 10.0.0.1:80", "    real = 10.0.0.2:80 gate")
    assert config.globals.autoreload and config.virtuals[0].reals


def test_block_line_locations_point_into_the_raw_line() -> None:
    found = problems(V, "\tscheduler=RR")
    assert str(found[0].location) == "t.cf:2:12"


def test_section_headers_are_unknown_commands() -> None:
    found = problems("[vip]")
    assert "no [sections]" in (found[0].hint or "")


def test_every_error_at_once_in_line_order() -> None:
    found = problems("fork=maybe", V, "    scheduler=RR", "    weight=3", "quiescent=x")
    assert [p.location.line for p in found] == [1, 3, 4, 5]
