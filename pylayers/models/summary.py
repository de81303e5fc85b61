"""model.summary(): the table Keras 3 prints, character for character.

Keras renders with rich: column widths from `positions` of the line length, each width
plus 2 of padding, then the total reduced evenly (rich's ratio_reduce, Python rounding)
to fit the line length less the borders."""
import shutil
import sys

import numpy as np

SEQUENTIAL_LAYOUT = (88, [0.45, 0.80, 1.0], ["Layer (type)", "Output Shape", "Param #"],
                     ["left", "left", "right"])
FUNCTIONAL_LAYOUT = (108, [0.3, 0.56, 0.74, 1.0],
                     ["Layer (type)", "Output Shape", "Param #", "Connected to"],
                     ["left", "left", "right", "left"])


def print_summary(model, line_length=None, positions=None, print_fn=None):
    rows, sequential_like = model_rows(model)
    default_length, default_positions, header, alignment = (
        SEQUENTIAL_LAYOUT if sequential_like else FUNCTIONAL_LAYOUT)
    default_length = min(default_length, shutil.get_terminal_size().columns - 4)
    widths = content_widths(line_length or default_length, positions or default_positions)
    lines = [f'Model: "{model.name}"'] + render_table(header, rows, widths, alignment)
    lines += footer_lines(model)
    text = "\n".join(lines) + "\n"
    if print_fn is not None:
        print_fn(text)
    else:
        sys.stdout.write(text)


def content_widths(line_length, positions):
    """Text width of each column after rich fits the table into line_length."""
    widths, current = [], 0
    for position in positions:
        width = int(position * line_length) - current
        if width < 4:
            raise ValueError("Insufficient console width to print summary.")
        widths.append(width)
        current += width
    padded = [w + 2 for w in widths]
    available = line_length - (len(widths) + 1)
    excess = sum(padded) - available
    if excess > 0:
        padded = _ratio_reduce(excess, padded)
    return [w - 2 for w in padded]


def _ratio_reduce(total, values):
    """Take `total` from values as evenly as rich does (round half to even)."""
    remaining_total, remaining_ratio, result = total, len(values), []
    for value in values:
        taken = min(value, round(remaining_total / remaining_ratio))
        result.append(value - taken)
        remaining_total -= taken
        remaining_ratio -= 1
    return result


def render_table(header, rows, widths, alignment):
    def rule(left, fill, middle, right):
        return left + middle.join(fill * (w + 2) for w in widths) + right

    def text_lines(cells, edge):
        wrapped = [_wrap(str(cell), w) for cell, w in zip(cells, widths)]
        height = max(len(c) for c in wrapped)
        lines = []
        for i in range(height):
            parts = []
            for cell_lines, width, align in zip(wrapped, widths, alignment):
                text = cell_lines[i] if i < len(cell_lines) else ""
                parts.append(" " + (text.rjust(width) if align == "right" else text.ljust(width)) + " ")
            lines.append(edge + edge.join(parts) + edge)
        return lines

    lines = [rule("┏", "━", "┳", "┓")] + text_lines(header, "┃") + [rule("┡", "━", "╇", "┩")]
    for i, row in enumerate(rows):
        if i:
            lines.append(rule("├", "─", "┼", "┤"))
        lines.extend(text_lines(row, "│"))
    lines.append(rule("└", "─", "┴", "┘"))
    return lines


def _wrap(text, width):
    """Word-wrap like rich: break at spaces; a word longer than the width is cut to
    width - 1 characters and an ellipsis."""
    lines, current = [], ""
    for word in text.split(" "):
        if len(word) > width:
            word = word[:width - 1] + "…"
        candidate = f"{current} {word}" if current else word
        if len(candidate) <= width:
            current = candidate
        else:
            lines.append(current)
            current = word
    lines.append(current)
    return lines


def model_rows(model):
    """(rows, sequential_like) as the model lays them out."""
    return model.summary_rows()


def layer_fields(layer, output_shape):
    name = f"{layer.name} ({type(layer).__name__})"
    shape = "?" if output_shape is None else format_shape(output_shape)
    params = f"{layer.count_params():,}" if layer.built else "0 (unbuilt)"
    return [name, shape, params]


def format_shape(shape):
    if isinstance(shape, list):
        return "[" + ", ".join(format_shape(s) for s in shape) + "]"
    return "(" + ", ".join(str(d) for d in shape) + ")"


def footer_lines(model):
    trainable = _count(model.trainable_weights)
    non_trainable = _count(model.non_trainable_weights)
    optimizer = getattr(model, "optimizer", None)
    optimizer_count = (_count(optimizer.variables)
                       if optimizer is not None and getattr(optimizer, "built", False) else None)
    total = trainable + non_trainable + (optimizer_count or 0)
    lines = [f" Total params: {total:,} ({readable_size(total * 4)})",
             f" Trainable params: {trainable:,} ({readable_size(trainable * 4)})",
             f" Non-trainable params: {non_trainable:,} ({readable_size(non_trainable * 4)})"]
    if optimizer_count is not None:
        lines.append(f" Optimizer params: {optimizer_count:,} ({readable_size(optimizer_count * 4)})")
    return lines


def _count(variables):
    return int(sum(np.prod(np.shape(v), dtype=np.int64) for v in variables))


def readable_size(num_bytes):
    size = float(num_bytes)
    for unit in ["B", "KB", "MB", "GB", "TB"]:
        if size / 1024 < 1:
            return f"{size:.2f} {unit}"
        size /= 1024
    return f"{size:.2f} PB"
