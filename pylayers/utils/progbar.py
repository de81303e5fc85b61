"""A progress bar with the layout of `keras.utils.Progbar` (Keras 3).

On a terminal (or in a notebook) `verbose=1` redraws one live line in place, with
Keras' escape codes and glyphs:

    12/50 ━━━━━━━━━━━━━━━━━━━━ 0s 3ms/step - accuracy: 0.8125 - loss: 0.5105

When stdout is not a terminal, `verbose=1` writes only the final line of each bar
(the same text without escape codes), so logs hold one line per epoch; Keras 3 on
Linux writes every redraw, escape codes and backspaces included, into the log.
`verbose=2` writes one line per bar when it finishes:

    4/4 - 1s - 325ms/step - accuracy: 0.1373 - loss: 2.3200
"""
import math
import sys
import time

import numpy as np

BOLD = "\x1b[1m"
GREEN = "\x1b[32m"
GREY = "\x1b[37m"
RESET = "\x1b[0m"
BAR_GLYPH = "\u2501"  # ━


def _is_dynamic_display():
    """Whether stdout redraws in place: a terminal or a Jupyter kernel."""
    isatty = getattr(sys.stdout, "isatty", None)
    return bool(isatty and isatty()) or "ipykernel" in sys.modules


def _write(message):
    sys.stdout.write(message)
    sys.stdout.flush()


def format_time_per_unit(seconds, unit_name):
    """' 3ms/step', ' 12us/step' or ' 2s/step', as Keras prints a step's duration."""
    if seconds >= 1 or seconds == 0:
        return f" {seconds:.0f}s/{unit_name}"
    if seconds >= 1e-3:
        return f" {seconds * 1e3:.0f}ms/{unit_name}"
    return f" {seconds * 1e6:.0f}us/{unit_name}"


def format_eta(seconds):
    """Remaining time as '7s', '2:05' or '1:02:05'."""
    if seconds > 3600:
        return "%d:%02d:%02d" % (seconds // 3600, (seconds % 3600) // 60, seconds % 60)
    if seconds > 60:
        return "%d:%02d" % (seconds // 60, seconds % 60)
    return "%ds" % seconds


def format_value(value):
    """A metric as Keras shows it: 4 decimals, or scientific when tiny."""
    return f" {value:.4f}" if abs(value) > 1e-3 else f" {value:.4e}"


class Progbar:
    """Displays a progress bar.

    Args:
        target: total number of steps expected, None if unknown.
        width: width of the bar in characters.
        verbose: 0 (silent), 1 (live bar) or 2 (one line when finished).
        interval: minimum time in seconds between two redraws of the live bar.
        stateful_metrics: names of values shown as given; every other value is
            averaged over the steps seen so far.
        unit_name: the unit of a step in the time per step ("step", "sample").
    """

    def __init__(self, target, width=20, verbose=1, interval=0.05, stateful_metrics=None,
                 unit_name="step"):
        if target is not None and (not isinstance(target, (int, np.integer)) or target < 0):
            raise ValueError(f"Progbar target must be None or an integer >= 0. "
                             f"Received: target={target!r}")
        if verbose not in (0, 1, 2):
            raise ValueError(f"Progbar verbose must be 0, 1 or 2. Received: verbose={verbose!r}")
        self.target = target
        self.width = width
        self.verbose = verbose
        self.interval = interval
        self.unit_name = unit_name
        self.stateful_metrics = set(stateful_metrics or ())
        self._dynamic_display = _is_dynamic_display()
        self._totals = {}  # name -> [weighted sum, weight]
        self._seen_so_far = 0
        self._start = time.time()
        self._last_update = 0.0
        self._time_after_first_step = None
        self._prev_total_width = 0

    def update(self, current, values=None, finalize=None):
        """Move the bar to step `current`.

        Args:
            current: index of the current step (1-based count of steps done).
            values: list of `(name, value)` pairs for the last step. Names in
                `stateful_metrics` are shown as given, the others averaged over
                steps (weighted by the steps each value covers).
            finalize: whether this is the bar's last update; defaults to
                `current >= target`.
        """
        if finalize is None:
            finalize = self.target is not None and current >= self.target
        self._accumulate(current, values or [], finalize)
        self._seen_so_far = current
        now = time.time()
        time_per_unit = self._estimate_step_duration(current, now)
        if self.verbose == 1:
            self._draw_bar(current, now, time_per_unit, finalize)
        elif self.verbose == 2 and finalize and self.target:
            _write(self._summary_line(current, now, time_per_unit))
        self._last_update = now

    def add(self, n, values=None):
        """Advance the bar by `n` steps."""
        self.update(self._seen_so_far + n, values)

    def _accumulate(self, current, values, finalize):
        for name, value in values:
            if name in self.stateful_metrics or finalize:
                self._totals[name] = [value, 1]
                continue
            steps_covered = max(current - self._seen_so_far, 1)
            total = self._totals.setdefault(name, [0.0, 0])
            total[0] += value * steps_covered
            total[1] += steps_covered

    def _average(self, name):
        value, weight = self._totals[name]
        return float(np.mean(value)) / max(1, weight)

    def _metrics_text(self):
        return "".join(f" - {name}:{format_value(self._average(name))}" for name in self._totals)

    def _draw_bar(self, current, now, time_per_unit, finalize):
        if not self._dynamic_display:
            if finalize:
                _write(self._bar_line(current, now, time_per_unit, finalize, styled=False) + "\n")
            return
        if now - self._last_update < self.interval and not finalize:
            return
        line = self._bar_line(current, now, time_per_unit, finalize, styled=True)
        visible_width = len(self._bar_line(current, now, time_per_unit, finalize, styled=False))
        message = "\b" * self._prev_total_width + "\r" + line
        message += " " * max(0, self._prev_total_width - visible_width)
        _write(message + ("\n" if finalize else ""))
        self._prev_total_width = visible_width

    def _bar_line(self, current, now, time_per_unit, finalize, styled):
        """The bar's text; `styled` adds Keras' bold and colour escape codes."""
        def style(code, text):
            return f"{code}{text}{RESET}" if styled else text

        if self.target:
            digits = int(math.log10(self.target)) + 1
            done_width = int(self.width * current / self.target)
            line = style(BOLD, "%*d/%d" % (digits, current, self.target)) + " "
            if done_width > 0:
                line += style(GREEN, BAR_GLYPH * done_width)
            line += style(GREY, BAR_GLYPH * (self.width - done_width))
        else:
            line = "%7d/Unknown" % current
        if self.target and not finalize:
            timing = format_eta(time_per_unit * (self.target - current))
        else:
            timing = f"{now - self._start:.0f}s"
        line += " " + style(BOLD, timing) + format_time_per_unit(time_per_unit, self.unit_name)
        return line + self._metrics_text()

    def _summary_line(self, current, now, time_per_unit):
        """The verbose=2 line: count, elapsed time, time per step, metrics."""
        digits = int(math.log10(self.target)) + 1
        line = "%*d/%d - %.0fs -" % (digits, current, self.target, now - self._start)
        line += format_time_per_unit(time_per_unit, self.unit_name)
        for name in self._totals:
            average = self._average(name)
            line += f" - {name}:" + (f" {average:.4f}" if average > 1e-3 else f" {average:.4e}")
        return line + "\n"

    def _estimate_step_duration(self, current, now):
        """Seconds per step, leaving the (slow, compiling) first step out once past it."""
        if not current:
            return 0.0
        if self._time_after_first_step is not None and current > 1:
            time_per_unit = (now - self._time_after_first_step) / (current - 1)
        else:
            time_per_unit = (now - self._start) / current
        if current == 1:
            self._time_after_first_step = now
        return time_per_unit
