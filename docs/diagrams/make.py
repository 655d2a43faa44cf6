"""Draw docs/layers.svg and docs/record.svg from their text sources.

    python docs/diagrams/make.py          # rewrites both SVGs
    python docs/diagrams/make.py --check  # exit 1 if they are stale

Sources: docs/diagrams/layers.txt (the layers) and the record table of
docs/format.md (the "### Record" section's Offset | Size | Description
table), so the picture of a record is drawn from the format's own contract.
Plain SVG from the standard library: no Graphviz needed to rebuild it.
tests/test_diagrams.py fails when the committed SVGs differ from this output.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from xml.sax.saxutils import escape

DOCS = Path(__file__).resolve().parent.parent
FONT = 'font-family="DejaVu Sans Mono, Menlo, Consolas, monospace"'
COLORS = ["#dbe9f6", "#e3f1df", "#fbeed5", "#eeeeee"]


def _svg(width: int, height: int, body: list[str], title: str) -> str:
    return "\n".join(
        [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}">',
            f"<title>{escape(title)}</title>",
            f'<rect width="{width}" height="{height}" fill="white"/>',
            *body,
            "</svg>",
            "",
        ]
    )


def _text(
    x: float, y: float, text: str, size: int = 13, anchor: str = "middle", bold: bool = False
) -> str:
    weight = ' font-weight="bold"' if bold else ""
    return (
        f'<text x="{x:.0f}" y="{y:.0f}" font-size="{size}" text-anchor="{anchor}" {FONT}{weight}>'
        f"{escape(text)}</text>"
    )


def layers_svg(source: str) -> str:
    rows = []
    for line in source.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, parts = line.partition("|")
            rows.append((name.strip(), [p.strip() for p in parts.split(";") if p.strip()]))
    width, box_height, gap, margin = 900, 74, 34, 20
    height = margin * 2 + len(rows) * box_height + (len(rows) - 1) * gap
    body = [
        '<defs><marker id="arrow" markerWidth="10" markerHeight="10" refX="5" refY="5" '
        'orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>'
    ]
    for index, (name, parts) in enumerate(rows):
        top = margin + index * (box_height + gap)
        color = COLORS[min(index, len(COLORS) - 1)]
        body.append(
            f'<rect x="{margin}" y="{top}" width="{width - 2 * margin}" height="{box_height}" '
            f'rx="8" fill="{color}" stroke="#555"/>'
        )
        body.append(_text(margin + 12, top + 22, name, 14, "start", bold=True))
        cell = (width - 2 * margin - 24) / max(1, len(parts))
        for i, part in enumerate(parts):
            label, _, detail = part.partition(": ")
            x = margin + 12 + cell * i + cell / 2
            body.append(_text(x, top + 46, label, 12))
            if detail:
                body.append(_text(x, top + 63, detail, 11))
        if index + 1 < len(rows):
            y = top + box_height
            body.append(
                f'<line x1="{width / 2}" y1="{y + 2}" x2="{width / 2}" y2="{y + gap - 4}" '
                'stroke="#555" stroke-width="2" marker-end="url(#arrow)"/>'
            )
    body.append(
        _text(width - margin, height - 4, "each layer imports only the one below it", 11, "end")
    )
    return _svg(width, height, body, "tidelog's layers")


def record_fields(format_md: str) -> list[tuple[str, str, str]]:
    """(offset, size, description) rows of the "### Record" table of docs/format.md."""
    section = re.search(r"^### Record\b.*?$(.*?)(?=^#)", format_md, re.M | re.S)
    if section is None:
        raise SystemExit('docs/format.md has no "### Record" section: update docs/diagrams/make.py')
    rows = []
    for line in section.group(1).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if (
            len(cells) == 3
            and cells[0]
            and not set(cells[0]) <= {"-", ":"}
            and cells[0] != "Offset"
        ):
            rows.append((cells[0], cells[1], cells[2]))
    if not rows:
        raise SystemExit("docs/format.md's record section has no Offset | Size | Description table")
    return rows


def _label(description: str) -> str:
    name = re.split(r"[:(,;]", description, maxsplit=1)[0].replace("`", "").strip()
    return name if len(name) <= 18 else name[:17] + "…"


def record_svg(format_md: str) -> str:
    fields = record_fields(format_md)
    scale, margin, top, bar = 16, 20, 46, 54
    # Wide enough for the field's bytes and for its labels (about 7 px a character).
    widths = [
        max(int(size) * scale if size.isdigit() else 0, 7 * max(len(_label(d)), len(size)) + 14)
        for _, size, d in fields
    ]
    width = margin * 2 + sum(widths)
    height = top + bar + 78
    body = [
        _text(
            margin,
            24,
            "one record batch, as docs/format.md lays it out (little-endian)",
            13,
            "start",
            bold=True,
        )
    ]
    x = margin
    for (offset, size, description), w in zip(fields, widths, strict=True):
        fixed = size.isdigit()
        color = COLORS[0] if fixed else COLORS[1]
        body.append(
            f'<rect x="{x}" y="{top}" width="{w}" height="{bar}" fill="{color}" stroke="#555"/>'
        )
        body.append(_text(x + 2, top - 6, offset, 10, "start"))
        body.append(_text(x + w / 2, top + 24, _label(description), 11))
        body.append(_text(x + w / 2, top + 42, f"{size} B" if fixed else size, 10))
        x += w
    frame = sum(w for (_, size, _), w in zip(fields, widths, strict=True) if size.isdigit())
    y = top + bar + 22
    body.append(f'<line x1="{margin}" y1="{y}" x2="{margin + frame}" y2="{y}" stroke="#555"/>')
    body.append(
        _text(
            margin + frame / 2,
            y + 16,
            "batch header (CRC32C covers all after the first 8 bytes)",
            11,
        )
    )
    body.append(
        f'<line x1="{margin + frame}" y1="{y}" x2="{width - margin}" y2="{y}" stroke="#555" '
        'stroke-dasharray="4 3"/>'
    )
    body.append(
        _text(margin + frame + (width - margin * 2 - frame) / 2, y + 16, "lengths and records", 11)
    )
    return _svg(width, height, body, "a tidelog record batch")


def render() -> dict[Path, str]:
    """Each SVG's path and the text it should hold."""
    layers = (DOCS / "diagrams" / "layers.txt").read_text()
    format_md = (DOCS / "format.md").read_text()
    return {DOCS / "layers.svg": layers_svg(layers), DOCS / "record.svg": record_svg(format_md)}


def main(argv: list[str]) -> int:
    drawn = render()
    stale = [p for p, text in drawn.items() if not p.exists() or p.read_text() != text]
    if "--check" in argv:
        for path in stale:
            print(f"{path} is stale: run python docs/diagrams/make.py", file=sys.stderr)
        return 1 if stale else 0
    for path, text in drawn.items():
        path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
