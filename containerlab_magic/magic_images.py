"""`%container` image verbs in a notebook, `%%container build`, and the layer chart.

The same commands (commands/image_verbs.py) as the CLI (cli_images.py), rendered
for a notebook: tables in HTML, a progress bar per layer for pull and push
(ipywidgets; the store calls back per 64 KiB from its worker threads, so the
widget values are set at most every 100 ms per layer, under a lock), and for
`images` and `history` a stacked bar chart of layer sizes in SVG: one bar per
image, one block per layer, a layer two images share drawn in the same colour
in both, so a course can show what a layer is and what sharing saves.
"""

from __future__ import annotations

import hashlib
import html
import json
import threading
import time

from IPython.display import display

from . import commands, formats, parsers
from . import display as show


class PullBars:
    """progress(layer_digest, done, total, status) -> an ipywidgets bar per layer."""

    INTERVAL = 0.1

    def __init__(self, title: str):
        import ipywidgets as w

        self.w = w
        self.lock = threading.Lock()
        self.rows: dict[str, tuple] = {}
        self.last: dict[str, float] = {}
        self.box = w.VBox([w.HTML(f"<b>{html.escape(title)}</b>")])
        display(self.box)

    def __call__(self, digest: str, done: int, total: int, status: str) -> None:
        w = self.w
        with self.lock:
            row = self.rows.get(digest)
            if row is None:
                bar = w.IntProgress(value=0, min=0, max=max(total, 1), description=digest[7:19],
                                    style={"description_width": "110px"}, layout=w.Layout(width="460px"))
                label = w.Label(status)
                row = self.rows[digest] = (bar, label)
                self.box.children = (*self.box.children, w.HBox([bar, label]))
            bar, label = row
            now = time.monotonic()
            if label.value == status and now - self.last.get(digest, 0) < self.INTERVAL:
                return
            self.last[digest] = now
            if total:
                bar.max = total
                bar.value = min(done, total)
            if status in ("done", "exists", "mounted"):
                bar.value = bar.max
                bar.bar_style = "success"
            label.value = status if not total or status not in ("downloading", "uploading") else \
                f"{status} {formats.size(done)} / {formats.size(total)}"


# ---------------------------------------------------------------- the chart


def _colour(diff_id: str) -> str:
    """A stable colour per layer: the same layer has the same colour in every bar."""
    h = int(hashlib.sha256(diff_id.encode()).hexdigest()[:6], 16)
    return f"hsl({h % 360}, 55%, {45 + (h >> 9) % 20}%)"


class LayerChart:
    """Stacked horizontal bars of layer sizes, one per image (SVG, no plotting library)."""

    def __init__(self, images: list[tuple[str, list[tuple[str, int]]]], title: str = "layers"):
        self.images = images  # (label, [(diff_id, size), ... bottom first])
        self.title = title

    def shared(self) -> set[str]:
        seen: dict[str, int] = {}
        for _, layers in self.images:
            for diff_id in {d for d, _ in layers}:
                seen[diff_id] = seen.get(diff_id, 0) + 1
        return {d for d, n in seen.items() if n > 1}

    def _repr_svg_(self) -> str:
        width, label_w, row_h = 640, 200, 26
        biggest = max([sum(s for _, s in layers) for _, layers in self.images] + [1])
        shared = self.shared()
        parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" '
                 f'height="{row_h * len(self.images) + 40}" font-family="sans-serif" font-size="12">',
                 f'<text x="0" y="14" font-weight="bold">{html.escape(self.title)}</text>']
        for row, (label, layers) in enumerate(self.images):
            y = 24 + row * row_h
            parts.append(f'<text x="0" y="{y + 15}">{html.escape(label[:30])}</text>')
            x = float(label_w)
            for diff_id, size in layers:
                w = max(1.0, (width - label_w - 80) * size / biggest)
                stroke = ' stroke="black" stroke-width="2"' if diff_id in shared else ""
                parts.append(f'<rect x="{x:.1f}" y="{y + 2}" width="{w:.1f}" height="{row_h - 6}" '
                             f'fill="{_colour(diff_id)}"{stroke}><title>{html.escape(diff_id[7:19])}: '
                             f'{formats.size(size)}{" (shared)" if diff_id in shared else ""}</title></rect>')
                x += w
            total = sum(s for _, s in layers)
            parts.append(f'<text x="{x + 4:.1f}" y="{y + 15}">{formats.size(total)}</text>')
        parts.append("</svg>")
        return "".join(parts)

    def __repr__(self) -> str:
        shared = self.shared()
        return "\n".join(f"{label}: " + " + ".join(f"{d[7:19]}{'*' if d in shared else ''} {formats.size(s)}"
                                                   for d, s in layers) for label, layers in self.images)


# ---------------------------------------------------------------- the verbs


def verb_pull(magics, args):
    name, digest = commands.pull(magics.engine, args.image,
                                 progress=None if args.quiet else PullBars(f"pull {args.image}"))
    return show.Text(f"{name}\nDigest: {digest}")


def verb_push(magics, args):
    name, digest = commands.push(magics.engine, args.image, args.target,
                                 progress=None if args.quiet else PullBars(f"push {args.image}"))
    return show.Text(f"{name}: digest: {digest}")


def verb_login(magics, args):
    from .runtime.errors import SpecError

    raise SpecError("%container login: a password does not belong in a notebook; log in from a terminal "
                    "(`containerlab-magic login -u USER --password-stdin HOST`): the notebook uses the same file")


def verb_logout(magics, args):
    commands.logout(args.server)
    return show.Text(f"Removing login credentials for {args.server}")


def verb_tag(magics, args):
    return show.Text(commands.tag(magics.engine, args.source, args.target))


def verb_images(magics, args):
    lines = commands.image_list(magics.engine)
    table = show.Table.of(formats.image_lines_table(lines))
    stored = [(f"{line.repository}:{line.tag}", list(line.layers)) for line in lines if not line.builtin]
    if stored:
        display(table)
        return LayerChart(stored, "layer sizes: a block outlined in black is shared with another image")
    return table


def verb_history(magics, args):
    steps = commands.history(magics.engine, args.image)
    display(show.Table.of(formats.history_table(steps)))
    layers = [(s["layer"], s["size"]) for s in reversed(steps) if s.get("layer")]
    return LayerChart([(args.image, layers)], f"{args.image}: its layers, bottom first")


def verb_rmi(magics, args):
    lines = []
    for name in args.images:
        freed = commands.rmi(magics.engine, name, force=args.force)
        lines += [f"Untagged: {ref}" for ref in freed.get("untagged", ())] + [formats.freed_line(freed)]
    return show.Text("\n".join(lines))


def verb_image(magics, args):
    if args.image_verb == "prune":
        return show.Text(formats.freed_line(commands.image_prune(magics.engine)))
    if args.image_verb == "inspect":
        return show.Text(json.dumps([commands.image_inspect(magics.engine, n) for n in args.images], indent=2))
    if args.image_verb == "history":
        return verb_history(magics, args)
    return verb_images(magics, args)


def verb_save(magics, args):
    commands.save(magics.engine, args.images, args.output, args.format)
    return show.Text(f"saved {', '.join(args.images)} to {args.output}")


def verb_load(magics, args):
    return show.Text("\n".join(f"Loaded image: {n}" for n in commands.load(magics.engine, args.input)))


def verb_import(magics, args):
    changes = parsers.parse_changes(args.change) if args.change else None
    return show.Text(commands.import_(magics.engine, args.file, args.image, changes)[1])


def verb_export(magics, args):
    count = commands.export(magics.engine, args.container, args.output)
    return show.Text(f"exported {count} entries to {args.output}")


def verb_commit(magics, args):
    return show.Text(commands.commit(magics.engine, args.container, args.image, change_lines=args.change,
                                     comment=args.message)[1])


def verb_build(magics, args, text: str | None = None):
    """`%%container build -t NAME [CONTEXT]`: the cell is the Containerfile; output streams into the cell."""
    import sys

    if text is None:
        text, where = commands.read_containerfile(args.context, args.file)
    else:
        where = "the cell"

    def on_output(stream: str, data: bytes) -> None:
        (sys.stdout if stream == "stdout" else sys.stderr).write(data.decode(errors="replace"))

    digest = commands.build(magics.engine, args.context, text, args.tag,
                            build_args=commands.parse_build_args(args.build_arg), say=print, on_output=on_output,
                            limits=parsers.build_limits(args), network=args.network, where=where)
    return show.Text(digest)


VERBS = {name[len("verb_"):]: fn for name, fn in globals().items() if name.startswith("verb_")}
