"""Progbar and ProgbarLogger: layout checked against output recorded from Keras 3."""
import io
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from pylayers.callbacks import CallbackList, ProgbarLogger
from pylayers.utils import progbar
from pylayers.utils.progbar import Progbar, format_eta, format_time_per_unit

PROGRESS = Path(__file__).parent / "fixtures" / "progress"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
DURATION = re.compile(r"\b\d+(s|ms|us)\b")


def keras_output(name):
    """A recorded output, its carriage returns kept."""
    return (PROGRESS / name).read_bytes().decode("utf-8")


def without_timing(text):
    """Durations (elapsed, ETA, per step) replaced by a placeholder."""
    return DURATION.sub("<t>", text)


def screen_lines(raw):
    """The lines a terminal shows once `raw` is printed (\\r, \\b and colours applied)."""
    lines = []
    for raw_line in ANSI.sub("", raw).split("\n"):
        cells, cursor = [], 0
        for char in raw_line:
            if char == "\r":
                cursor = 0
            elif char == "\b":
                cursor = max(0, cursor - 1)
            else:
                cells[cursor:cursor + 1] = [char]
                cursor += 1
        lines.append("".join(cells).rstrip())
    return lines[:-1] if lines and not lines[-1] else lines


def redraws(raw):
    """Each drawing of a live bar: the text after a \\r, less its trailing \\b and padding."""
    return [without_timing(segment.rstrip("\b").rstrip(" "))
            for segment in raw.split("\r")[1:]]


class Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture
def terminal(monkeypatch, capsys):
    """Captured stdout that progress bars take for a terminal."""
    monkeypatch.setattr(progbar, "_is_dynamic_display", lambda: True)
    return capsys


def test_terminal_and_notebook_detection(monkeypatch):
    monkeypatch.setattr(sys, "stdout", Terminal())
    assert progbar._is_dynamic_display()
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    assert not progbar._is_dynamic_display()
    monkeypatch.setitem(sys.modules, "ipykernel", object())
    assert progbar._is_dynamic_display()


@pytest.fixture
def clock(monkeypatch):
    """A fake clock for the progress bar, moved by hand: clock.now = ..."""
    fake = SimpleNamespace(now=1000.0)
    monkeypatch.setattr(progbar, "time", SimpleNamespace(time=lambda: fake.now))
    return fake


def final_logs(keras_line):
    """The metrics shown on a Keras progress line, as floats in their order."""
    return {name: float(value) for name, value in re.findall(r" - (\w+): ([-\d.e+]+)", keras_line)}


def run_progbar_logger(verbose, epoch_lines, steps=4):
    callback_list = CallbackList(add_progbar=True, verbose=verbose, epochs=len(epoch_lines),
                                 steps=steps)
    callback_list.on_train_begin()
    for epoch, line in enumerate(epoch_lines):
        logs = final_logs(line)
        callback_list.on_epoch_begin(epoch)
        for batch in range(steps):
            callback_list.on_train_batch_end(batch, {k: v for k, v in logs.items()
                                                     if not k.startswith("val_")})
        callback_list.on_epoch_end(epoch, logs)
    callback_list.on_train_end()


def test_fit_progress_when_piped_shows_the_final_keras_line_per_epoch(capsys):
    keras_screen = screen_lines(keras_output("fit_verbose1.txt"))
    assert keras_screen[0] == "Epoch 1/2" and keras_screen[2] == "Epoch 2/2"
    run_progbar_logger(1, [keras_screen[1], keras_screen[3]])
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\r" not in out and "\b" not in out
    assert without_timing(out).splitlines() == [without_timing(line) for line in keras_screen]


def test_fit_progress_verbose_2_matches_keras(capsys):
    keras_text = keras_output("fit_verbose2.txt")
    lines = keras_text.splitlines()
    run_progbar_logger(2, [lines[1], lines[3]])
    assert without_timing(capsys.readouterr().out) == without_timing(keras_text)


def test_fit_progress_on_a_terminal_draws_keras_final_bar(terminal):
    keras_raw = keras_output("fit_verbose1.txt")
    keras_screen = screen_lines(keras_raw)
    run_progbar_logger(1, [keras_screen[1], keras_screen[3]])
    ours = terminal.readouterr().out
    assert without_timing("\n".join(screen_lines(ours))) == \
        without_timing("\n".join(keras_screen))
    # The epoch's last drawing has the same escape codes and glyphs as Keras'.
    assert redraws(ours)[-1] == redraws(keras_raw)[-1]


def test_live_bar_redraws_like_keras(terminal):
    """Averaged and stateful values, colours, glyphs: each redraw as Keras draws it."""
    bar = Progbar(5, interval=0.0, stateful_metrics=["acc"])
    for step, (loss, acc) in enumerate([(4.0, 0.1), (2.0, 0.2), (1.0, 0.3), (0.5, 0.4),
                                        (0.0001, 0.5)], start=1):
        bar.update(step, [("loss", loss), ("acc", acc)])
    keras_raw = keras_output("progbar_update.txt")
    ours = terminal.readouterr().out
    assert redraws(ours) == redraws(keras_raw)
    assert ours.endswith("\n") and keras_raw.endswith("\n")


def test_live_bar_erases_the_previous_line(terminal, clock):
    bar = Progbar(3, interval=0.0)
    bar.update(1, [("loss", 12.5)])
    first = terminal.readouterr().out
    clock.now += 2.0
    bar.update(2, [("loss", -10.5)])   # average 1.0: a shorter line than the first
    second = terminal.readouterr().out
    first_width = len(ANSI.sub("", first).lstrip("\r"))
    assert second.startswith("\b" * first_width + "\r")
    second_text = ANSI.sub("", second.lstrip("\b").lstrip("\r"))
    assert second_text == "2/3 " + "\u2501" * 6 + "\u2501" * 14 + " 2s 2s/step - loss: 1.0000 "


def test_live_bar_waits_interval_between_redraws_but_always_finishes(terminal, clock):
    bar = Progbar(3, interval=10.0)
    for step in (1, 2, 3):
        clock.now += 1.0
        bar.update(step)
    out = terminal.readouterr().out
    assert out.count("\r") == 2 and "2/3" not in out and out.endswith("\n")


def test_bar_shows_eta_until_finished(terminal, clock):
    bar = Progbar(100, interval=0.0)
    clock.now += 1.0
    bar.update(1)
    clock.now += 60.0
    bar.update(31)   # 2 s per step after the first, 69 steps left: 2:18
    assert screen_lines(terminal.readouterr().out) == [
        " 31/100 " + "\u2501" * 6 + "\u2501" * 14 + " 2:18 2s/step"]


def test_unknown_target_and_add_when_piped(capsys, clock):
    bar = Progbar(None)
    bar.add(2, [("loss", 1.0)])
    bar.add(1, [("loss", 4.0)])
    assert capsys.readouterr().out == ""
    bar.update(3, [("loss", 0.0005)], finalize=True)
    assert capsys.readouterr().out == "      3/Unknown 0s 0s/step - loss: 5.0000e-04\n"


def test_verbose_2_prints_once_and_verbose_0_never(capsys, clock):
    for verbose, expected in [(2, "2/2 - 3s - 2s/step - acc: 0.7500\n"), (0, "")]:
        bar = Progbar(2, verbose=verbose)
        clock.now += 1.0
        bar.update(1, [("acc", 0.5)])
        clock.now += 2.0
        bar.update(2, [("acc", 1.0)], finalize=False)
        bar.update(2, finalize=True)
        assert capsys.readouterr().out == expected


@pytest.mark.parametrize("kwargs, message", [
    ({"target": -1}, "Received: target=-1"),
    ({"target": 2.5}, "Received: target=2.5"),
    ({"target": 5, "verbose": 3}, "Received: verbose=3"),
])
def test_progbar_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        Progbar(**kwargs)


@pytest.mark.parametrize("seconds, text", [
    (0, " 0s/step"), (2e-5, " 20us/step"), (0.0031, " 3ms/step"), (1.5, " 2s/step")])
def test_time_per_unit_format(seconds, text):
    assert format_time_per_unit(seconds, "step") == text


@pytest.mark.parametrize("seconds, text", [(5.9, "5s"), (75, "1:15"), (3700, "1:01:40")])
def test_eta_format(seconds, text):
    assert format_eta(seconds) == text


def test_progbar_logger_predict_finds_its_target_and_omits_outputs(capsys, clock):
    logger = ProgbarLogger()
    CallbackList([logger], verbose=1, epochs=1, steps=None)
    logger.on_predict_begin()
    for batch in range(3):
        logger.on_predict_batch_end(batch, {"outputs": [1, 2]})
    logger.on_predict_end()
    assert capsys.readouterr().out == "3/3 " + "\u2501" * 20 + " 0s 0s/step\n"


def test_single_epoch_has_no_epoch_header(capsys):
    run_progbar_logger(1, [" - loss: 0.5000"], steps=2)
    assert capsys.readouterr().out.startswith("2/2 ")
