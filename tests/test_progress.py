"""The one progress display (tqdm) that eval runs and fine-tuning jobs share."""

from __future__ import annotations

import io
import sys
import threading

import pytest

from finetuner_otel._progress import Progress, destination


class Terminal(io.StringIO):
    """A file that says it is a terminal, as a console's stderr does."""

    def isatty(self) -> bool:
        return True


def test_where_progress_goes(monkeypatch: pytest.MonkeyPatch) -> None:
    log = io.StringIO()
    assert destination(log) is log  # asked for: written even though it is no terminal
    assert destination(False) is None and destination(None) is None
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert destination(True) is None  # stderr redirected to a file or a pipe: nothing
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert destination(True) is terminal


def test_a_log_gets_whole_lines_and_the_last_count() -> None:
    log = io.StringIO()
    with Progress(log, "Classification base", total=25, unit=" examples") as bar:
        for i in range(25):
            bar.advance(error=i == 3)
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    assert all(line.startswith("Classification base:") for line in lines)
    assert "25/25" in lines[-1] and "1 error" in lines[-1]
    assert len(lines) <= 14  # about one line per tenth, not one per example


def test_a_terminal_gets_the_bar_redrawn_in_place_with_notes_above_it() -> None:
    terminal = Terminal()
    bar = Progress(terminal, "ftjob-1: queued", bar_format="{desc} |{bar:10}| step {n}/{total}")
    bar.note("[info] Validating training file")
    bar.show("ftjob-1: running", done=2, total=4)
    bar.close()
    text = terminal.getvalue()
    assert text.count("\n") == 2  # the note and the bar's last state, nothing else on new lines
    assert "\r" in text  # redrawn in place
    assert "[info] Validating training file\n" in text
    assert text.rstrip("\n").rsplit("\r", 1)[-1].startswith("ftjob-1: running |")
    assert "step 2/4" in text


def test_a_job_without_steps_shows_its_status_alone() -> None:
    log = io.StringIO()
    with Progress(log, "ftjob-1: queued", bar_format="{desc} |{bar:10}| step {n}/{total}") as bar:
        bar.note("[info] Job started")
        bar.show("ftjob-1: queued")  # unchanged: no new line
        bar.show("ftjob-1: succeeded")
    assert log.getvalue().splitlines() == [
        "ftjob-1: queued",
        "[info] Job started",
        "ftjob-1: succeeded",
    ]


def _advance_from_threads(bar: Progress, threads: int, each: int) -> None:
    workers = [
        threading.Thread(target=lambda: [bar.advance() for _ in range(each)])
        for _ in range(threads)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def test_nothing_is_written_when_off(monkeypatch: pytest.MonkeyPatch) -> None:
    quiet = io.StringIO()
    monkeypatch.setattr(sys, "stderr", quiet)
    bar = Progress(True, "eval", total=40)
    _advance_from_threads(bar, 4, 10)
    bar.note("a note")
    bar.close()
    assert quiet.getvalue() == ""


def test_steps_from_several_threads_are_all_counted() -> None:
    log = io.StringIO()
    with Progress(log, "eval", total=4000) as bar:
        _advance_from_threads(bar, 8, 500)
    assert "4000/4000" in log.getvalue().splitlines()[-1]
