"""dukatd.exec_output: lines, their bounds, the rate limit and the tail, with a fake clock."""

from __future__ import annotations

import pytest

from dukatd.exec_output import LineSplitter, OutputPump, dropped_marker


class Sink:
    """Collects what a pump sends, in order, as ("stdout"|"stderr"|"progress", payload)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, object]] = []

    def output(self, stream: str, text: str) -> None:
        self.sent.append((stream, text))

    def report_progress(self, fraction: float | None = None, message: str = "") -> None:
        self.sent.append(("progress", (fraction, message)))


class Clock:
    """Moved by hand; tests step it by multiples of 1/8 s, exact in binary floating point."""

    def __init__(self) -> None:
        self.now = 1024.0

    def __call__(self) -> float:
        return self.now


def pump(
    sink: Sink,
    clock: Clock | None = None,
    *,
    rate: float = 1000,
    burst: int = 1000,
    max_line: int = 100,
    tail: int = 1000,
) -> OutputPump:
    return OutputPump(
        sink,
        lines_per_second=rate,
        burst=burst,
        max_line_bytes=max_line,
        output_tail_bytes=tail,
        monotonic=clock or Clock(),
    )


# -- LineSplitter ---------------------------------------------------------------------------


def test_lines_across_chunks() -> None:
    splitter = LineSplitter(100)
    assert splitter.feed(b"one\ntw") == ([b"one"], 0)
    assert splitter.feed(b"o") == ([], 0)
    assert splitter.feed(b"\nthree\n\nfour") == ([b"two", b"three", b""], 0)
    assert splitter.flush() == (b"four", 0)
    assert splitter.flush() is None


def test_only_the_unfinished_line_is_cut_and_the_cut_is_counted() -> None:
    splitter = LineSplitter(4)
    assert splitter.feed(b"abcdefgh\nxy") == ([b"abcdefgh"], 0)  # complete: whole
    assert splitter.feed(b"z" * 10) == ([], 0)  # unfinished: 4 bytes of it held
    assert splitter.feed(b"z\nok\n") == ([b"xyzzz", b"ok"], 8)  # 8 already cut from the first


def test_a_line_of_exactly_the_limit_is_not_cut() -> None:
    splitter = LineSplitter(3)
    assert splitter.feed(b"abc\nab") == ([b"abc"], 0)
    assert splitter.feed(b"c\n") == ([b"abc"], 0)


def test_an_endless_line_is_flushed_cut() -> None:
    splitter = LineSplitter(2)
    for _ in range(1000):
        splitter.feed(b"xxxx")
    assert splitter.flush() == (b"xx", 3998)


# -- OutputPump -----------------------------------------------------------------------------


def test_lines_become_events_per_stream_decoded_without_cr() -> None:
    sink = Sink()
    p = pump(sink)
    p.feed(0, b"hello\r\nw\xc3\xb6rld\n")
    p.feed(1, b"bad \xff byte\n")
    p.feed(0, b"unfinished")
    p.finish()
    assert sink.sent == [
        ("stdout", "hello"),
        ("stdout", "wörld"),
        ("stderr", "bad \ufffd byte"),
        ("stdout", "unfinished"),
    ]


def test_cut_lines_say_how_much_was_cut() -> None:
    sink = Sink()
    p = pump(sink, max_line=5)
    p.feed(0, b"0123456789\nab")
    p.feed(0, b"cdefgh")
    p.feed(0, b"ij\n")
    p.feed(1, b"::progress 0.5 too long to be a report\n")
    assert sink.sent == [
        ("stdout", "01234 [dukatd: 5 more bytes cut]"),
        ("stdout", "abcde [dukatd: 5 more bytes cut]"),
        ("stderr", "::pro [dukatd: 33 more bytes cut]"),
    ]


def test_a_progress_line_longer_than_a_line_is_only_output() -> None:
    sink = Sink()
    pump(sink, max_line=12).feed(0, b"::progress 0.5 with a long message\n")
    assert sink.sent == [("stdout", "::progress 0 [dukatd: 22 more bytes cut]")]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("::progress 0.4 loading data", ("progress", (0.4, "loading data"))),
        ("::progress 0", ("progress", (0.0, ""))),
        ("::progress   1   done  ", ("progress", (1.0, "done"))),
        ("::progress 1.5 too far", ("stdout", "::progress 1.5 too far")),
        ("::progress -0.1", ("stdout", "::progress -0.1")),
        ("::progress nan", ("stdout", "::progress nan")),
        ("::progress half", ("stdout", "::progress half")),
        ("::progress", ("stdout", "::progress")),
        (" ::progress 0.5", ("stdout", " ::progress 0.5")),
    ],
)
def test_progress_lines(line: str, expected: tuple[str, object]) -> None:
    sink = Sink()
    pump(sink).feed(0, line.encode() + b"\n")
    assert sink.sent == [expected]


def test_progress_on_stderr_is_only_output() -> None:
    sink = Sink()
    pump(sink).feed(1, b"::progress 0.5 x\n")
    assert sink.sent == [("stderr", "::progress 0.5 x")]


def test_the_burst_passes_then_lines_are_dropped_and_counted() -> None:
    sink, clock = Sink(), Clock()
    p = pump(sink, clock, rate=8, burst=3)
    p.feed(0, b"".join(b"%d\n" % i for i in range(10)))
    assert sink.sent == [("stdout", "0"), ("stdout", "1"), ("stdout", "2")]
    clock.now += 0.25  # two tokens: one for the marker, one for the line
    p.feed(0, b"10\n")
    assert sink.sent[3:] == [("stdout", dropped_marker("stdout", 7)), ("stdout", "10")]


def test_a_marker_without_a_token_for_its_line_counts_that_line_next() -> None:
    sink, clock = Sink(), Clock()
    p = pump(sink, clock, rate=8, burst=1)
    p.feed(0, b"a\nb\nc\n")
    clock.now += 0.125  # one token: the marker takes it, "d" is dropped in turn
    p.feed(0, b"d\n")
    p.finish()
    assert sink.sent == [
        ("stdout", "a"),
        ("stdout", dropped_marker("stdout", 2)),
        ("stdout", dropped_marker("stdout", 1)),
    ]


def test_finish_tells_what_was_dropped_on_each_stream() -> None:
    sink = Sink()
    p = pump(sink, rate=1, burst=1)
    p.feed(0, b"a\nb\n")
    p.feed(1, b"x\ny\nz\n")
    p.finish()
    assert sink.sent == [
        ("stdout", "a"),
        ("stdout", dropped_marker("stdout", 1)),
        ("stderr", dropped_marker("stderr", 3)),
    ]
    assert dropped_marker("stderr", 1) == "[dukatd] 1 stderr line dropped (rate limit)"


def test_the_bucket_refills_no_higher_than_the_burst() -> None:
    sink, clock = Sink(), Clock()
    p = pump(sink, clock, rate=100, burst=2)
    clock.now += 3600
    p.feed(0, b"1\n2\n3\n4\n")
    assert [text for _, text in sink.sent] == ["1", "2"]


def test_reports_in_a_read_over_the_limit_are_not_counted_and_the_newest_is_kept() -> None:
    sink = Sink()
    p = pump(sink, rate=1, burst=1)
    p.feed(0, b"first\nx\n::progress 0.1 a\ny\n::progress 0.2 b\n::progress bad\n")
    p.finish()
    assert sink.sent == [
        ("stdout", "first"),
        ("progress", (0.2, "b")),
        ("stdout", dropped_marker("stdout", 3)),  # x, y and the line that was no report
    ]


def test_progress_over_the_limit_keeps_only_the_newest_and_sends_it_later() -> None:
    sink, clock = Sink(), Clock()
    p = pump(sink, clock, rate=8, burst=1)
    p.feed(0, b"start\n::progress 0.1 a\n::progress 0.2 b\n")
    assert sink.sent == [("stdout", "start")]
    clock.now += 0.125
    p.feed(1, b"err\n")  # its token goes to the progress that waited, the line is dropped
    assert sink.sent[1:] == [("progress", (0.2, "b"))]
    p.feed(0, b"::progress 0.3 c\n")
    p.finish()
    assert sink.sent[2:] == [
        ("progress", (0.3, "c")),
        ("stderr", dropped_marker("stderr", 1)),
    ]


def test_the_tail_keeps_the_last_bytes_of_each_stream_dropped_lines_included() -> None:
    sink = Sink()
    p = pump(sink, rate=1, burst=1, tail=10)
    for i in range(1000):
        p.feed(0, b"line %d\n" % i)
    p.feed(1, b"short")
    assert p.tail(0) == b"\nline 999\n"
    assert p.tail(1) == b"short"
    assert len(sink.sent) == 1  # everything else was over the limit
