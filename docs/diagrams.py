"""Architecture diagrams of the method pages, drawn as SVG by medseg's documentation build.

Each diagram is a few boxes placed on a grid and joined by arrows; :func:`all_diagrams` returns every figure of the
site as ``{file name: SVG text}``. ``docs/hooks.py`` adds them to the site as ``methods/img/<name>.svg``; run this file
to write them to a folder instead (``python docs/diagrams.py OUT_DIR``).
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

__all__ = ["Diagram", "Level", "all_diagrams", "u_shape"]

CHAR_WIDTH = 7.0
"""Estimated width of one character of the 13 px sans-serif font, in pixels."""
LINE_HEIGHT = 16.0
PADDING = 10.0

STYLES: dict[str, tuple[str, str]] = {
    "io": ("#eceff1", "#607d8b"),
    "enc": ("#e3f2fd", "#1e88e5"),
    "dec": ("#e8f5e9", "#43a047"),
    "mid": ("#ede7f6", "#5e35b1"),
    "skip": ("#fff3e0", "#fb8c00"),
    "loss": ("#ffebee", "#e53935"),
    "note": ("#ffffff", "#9e9e9e"),
}
"""Box kind -> (fill, stroke): input/output, encoder, decoder, bottleneck, skip module, loss, plain note."""


@dataclass
class Box:
    """A rounded box with one or more lines of text (the first is bold).

    Attributes:
        x: left edge.
        y: top edge.
        width: width in pixels.
        height: height in pixels.
        lines: text lines, centred.
        kind: a key of :data:`STYLES`.
    """

    x: float
    y: float
    width: float
    height: float
    lines: list[str]
    kind: str

    @property
    def cx(self) -> float:
        """Horizontal centre."""
        return self.x + self.width / 2

    @property
    def cy(self) -> float:
        """Vertical centre."""
        return self.y + self.height / 2


@dataclass
class Diagram:
    """A figure under construction: boxes keyed by name and arrows between them.

    Attributes:
        title: the accessible title of the SVG.
        boxes: the boxes by key.
        items: SVG elements drawn after the boxes' outlines (arrows, labels), in order.
    """

    title: str
    boxes: dict[str, Box] = field(default_factory=dict)
    items: list[str] = field(default_factory=list)

    def box(
        self,
        key: str,
        x: float,
        y: float,
        text: str | Sequence[str],
        kind: str = "enc",
        width: float | None = None,
        height: float | None = None,
    ) -> Box:
        """Add a box whose top-left corner is at ``(x, y)``.

        Args:
            key: name used by :meth:`arrow`.
            x: left edge.
            y: top edge.
            text: one line, or several (the first bold, the others smaller).
            kind: a key of :data:`STYLES`.
            width: width; by default wide enough for the longest line.
            height: height; by default tall enough for the lines.

        Returns:
            The box.
        """
        lines = [text] if isinstance(text, str) else list(text)
        width = width or max(len(line) for line in lines) * CHAR_WIDTH + 2 * PADDING
        height = height or len(lines) * LINE_HEIGHT + PADDING
        self.boxes[key] = Box(x, y, width, height, lines, kind)
        return self.boxes[key]

    def arrow(
        self,
        start: str,
        end: str,
        label: str = "",
        dashed: bool = False,
        route: str = "auto",
        both: bool = False,
        label_at: float = 0.5,
    ) -> None:
        """Join two boxes with an arrow along horizontal and vertical segments.

        Args:
            start: key of the box the arrow leaves.
            end: key of the box the arrow points at.
            label: text written on the arrow.
            dashed: draw a dashed line (losses, frozen or detached paths).
            route: ``h`` (leave and enter sideways), ``v`` (leave and enter through top or bottom), ``hv``
                (leave sideways, enter through top or bottom), ``vh`` (the reverse), or ``auto`` (``h`` when the
                boxes do not overlap horizontally, else ``v``).
            both: arrow heads at both ends.
            label_at: where along the path the label sits (0 = start, 1 = end).
        """
        a, b = self.boxes[start], self.boxes[end]
        if route == "auto":
            route = "h" if a.x + a.width < b.x or b.x + b.width < a.x else "v"
        self.line(_route(a, b, route), label, dashed, both, label_at)

    def line(
        self,
        points: Sequence[tuple[float, float]],
        label: str = "",
        dashed: bool = False,
        both: bool = False,
        label_at: float = 0.5,
    ) -> None:
        """Draw an arrow along given corner points (see :meth:`arrow` for the other arguments).

        Args:
            points: the corners, from the start to the arrow head.
            label: text written on the arrow.
            dashed: draw a dashed line.
            both: arrow heads at both ends.
            label_at: where along the path the label sits.
        """
        path = " ".join(f"{'M' if i == 0 else 'L'}{x:.1f},{y:.1f}" for i, (x, y) in enumerate(points))
        dash = ' stroke-dasharray="5,4"' if dashed else ""
        start_marker = ' marker-start="url(#head-start)"' if both else ""
        self.items.append(
            f'<path d="{path}" fill="none" stroke="#455a64" stroke-width="1.4"{dash}{start_marker}'
            ' marker-end="url(#head)"/>'
        )
        if label:
            x, y = _along(list(points), label_at)
            self.items.append(_label(x, y, label))

    def text(self, x: float, y: float, text: str, size: int = 12, anchor: str = "middle") -> None:
        """Write free text (a caption or a column title) with its baseline at ``(x, y)``.

        Args:
            x: anchor position.
            y: baseline.
            text: the text.
            size: font size in pixels.
            anchor: SVG ``text-anchor``.
        """
        self.items.append(
            f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" fill="#37474f">'
            f"{escape(text)}</text>"
        )

    def svg(self) -> str:
        """Render the figure.

        Returns:
            A standalone SVG document sized to its content.
        """
        width = max(b.x + b.width for b in self.boxes.values()) + 20
        height = max(b.y + b.height for b in self.boxes.values()) + 20
        parts = [
            f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width:.0f} {height:.0f}" width="{width:.0f}"'
            f' height="{height:.0f}" font-family="Helvetica, Arial, sans-serif" role="img">',
            f"<title>{escape(self.title)}</title>",
            "<defs>"
            '<marker id="head" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7"'
            ' orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#455a64"/></marker>'
            '<marker id="head-start" viewBox="0 0 10 10" refX="1" refY="5" markerWidth="7" markerHeight="7"'
            ' orient="auto"><path d="M10,0 L0,5 L10,10 z" fill="#455a64"/></marker>'
            "</defs>",
        ]
        parts += [_draw_box(b) for b in self.boxes.values()]
        parts += self.items
        parts.append("</svg>")
        return "\n".join(parts) + "\n"


def _route(a: Box, b: Box, route: str) -> list[tuple[float, float]]:
    """The corner points of an arrow from box ``a`` to box ``b``."""
    if route == "h":
        x0, x1 = (a.x + a.width, b.x) if a.cx < b.cx else (a.x, b.x + b.width)
        if b.y < a.cy < b.y + b.height:
            return [(x0, a.cy), (x1, a.cy)]
        if a.y < b.cy < a.y + a.height:
            return [(x0, b.cy), (x1, b.cy)]
        xm = (x0 + x1) / 2
        return [(x0, a.cy), (xm, a.cy), (xm, b.cy), (x1, b.cy)]
    if route == "v":
        y0, y1 = (a.y + a.height, b.y) if a.cy < b.cy else (a.y, b.y + b.height)
        if b.x < a.cx < b.x + b.width:
            return [(a.cx, y0), (a.cx, y1)]
        if a.x < b.cx < a.x + a.width:
            return [(b.cx, y0), (b.cx, y1)]
        ym = (y0 + y1) / 2
        return [(a.cx, y0), (a.cx, ym), (b.cx, ym), (b.cx, y1)]
    if route == "hv":
        x0 = a.x + a.width if a.cx < b.cx else a.x
        y1 = b.y if a.cy < b.cy else b.y + b.height
        return [(x0, a.cy), (b.cx, a.cy), (b.cx, y1)]
    if route == "vh":
        y0 = a.y + a.height if a.cy < b.cy else a.y
        x1 = b.x if a.cx < b.cx else b.x + b.width
        return [(a.cx, y0), (a.cx, b.cy), (x1, b.cy)]
    raise ValueError(f"unknown route {route!r}")


def _along(points: list[tuple[float, float]], fraction: float) -> tuple[float, float]:
    """The point at ``fraction`` of the length of a polyline."""
    lengths = [abs(x1 - x0) + abs(y1 - y0) for (x0, y0), (x1, y1) in itertools.pairwise(points)]
    target = sum(lengths) * fraction
    for ((x0, y0), (x1, y1)), length in zip(itertools.pairwise(points), lengths, strict=True):
        if target <= length and length > 0:
            t = target / length
            return x0 + (x1 - x0) * t, y0 + (y1 - y0) * t
        target -= length
    return points[-1]


def _label(x: float, y: float, text: str) -> str:
    """A small label on a white background centred at ``(x, y)``."""
    width = len(text) * 6.2 + 8
    return (
        f'<rect x="{x - width / 2:.1f}" y="{y - 9:.1f}" width="{width:.1f}" height="17" rx="3" fill="#ffffff"'
        f' fill-opacity="0.92"/><text x="{x:.1f}" y="{y + 4:.1f}" font-size="11" text-anchor="middle"'
        f' fill="#37474f" font-style="italic">{escape(text)}</text>'
    )


def _draw_box(box: Box) -> str:
    fill, stroke = STYLES[box.kind]
    parts = [
        f'<rect x="{box.x:.1f}" y="{box.y:.1f}" width="{box.width:.1f}" height="{box.height:.1f}" rx="6"'
        f' fill="{fill}" stroke="{stroke}" stroke-width="1.4"/>'
    ]
    top = box.cy - (len(box.lines) * LINE_HEIGHT) / 2 + 12
    for i, line in enumerate(box.lines):
        style = 'font-size="13" font-weight="bold" fill="#263238"' if i == 0 else 'font-size="11.5" fill="#455a64"'
        parts.append(
            f'<text x="{box.cx:.1f}" y="{top + i * LINE_HEIGHT:.1f}" text-anchor="middle" {style}>{escape(line)}</text>'
        )
    return "\n".join(parts)


# ------------------------------------------------------------------------------------------------------ U shapes


@dataclass
class Level:
    """One resolution level of a U-shaped network, shallow levels first.

    Attributes:
        encoder: the encoder box's lines (``None``: no encoder feature at this level).
        decoder: the decoder box's lines (``None``: none).
        skip: label of the skip arrow from encoder to decoder (``None``: no skip at this level).
        side: lines of an extra box right of the decoder box (a deep-supervision head), or ``None``.
    """

    encoder: Sequence[str] | None
    decoder: Sequence[str] | None
    skip: str | None = "concat"
    side: Sequence[str] | None = None


def u_shape(
    title: str,
    image: Sequence[str],
    levels: Sequence[Level],
    bottleneck: Sequence[Sequence[str]],
    head: Sequence[str],
    down: str = "",
    up: str = "",
    shared_skip: Sequence[str] | None = None,
) -> Diagram:
    """Draw a U-shaped network: encoder column on the left, decoder column on the right, bottleneck below.

    Args:
        title: accessible title.
        image: lines of the input box.
        levels: the resolution levels, shallow to deep.
        bottleneck: the boxes between the deepest encoder and decoder features, left to right.
        head: lines of the output box, above the decoder column.
        down: label of the arrows between encoder levels.
        up: label of the arrows between decoder levels.
        shared_skip: one module taking every skip and returning new ones (UTANet's TA-MoSC); its lines.

    Returns:
        The diagram.
    """
    diagram = Diagram(title)
    row, column_width = 68.0, 190.0
    middle = 250.0 if shared_skip is None else 280.0
    enc_x, dec_x = 20.0, 20.0 + column_width + middle
    diagram.box("image", enc_x, 20, image, "io", width=column_width)
    diagram.box("head", dec_x, 20, head, "io", width=column_width)
    previous_enc = "image"
    top = 20 + row + 10
    decoder_keys: list[str] = []
    for i, level in enumerate(levels):
        y = top + i * row
        if level.encoder is not None:
            diagram.box(f"e{i}", enc_x, y, level.encoder, "enc", width=column_width)
            diagram.arrow(previous_enc, f"e{i}", down if previous_enc != "image" else "", route="v")
            previous_enc = f"e{i}"
        if level.decoder is not None:
            diagram.box(f"d{i}", dec_x, y, level.decoder, "dec", width=column_width)
            decoder_keys.append(f"d{i}")
        if level.side is not None:
            diagram.box(f"s{i}", dec_x + column_width + 40, y, level.side, "io")
            diagram.arrow(f"d{i}", f"s{i}", route="h")
    if shared_skip is not None:
        skip_levels = [i for i, level in enumerate(levels) if level.skip is not None]
        y0, y1 = top + skip_levels[0] * row, top + skip_levels[-1] * row + 42
        diagram.box("shared", enc_x + column_width + 60, y0, shared_skip, "skip", width=middle - 120, height=y1 - y0)
    for i, level in enumerate(levels):
        if level.skip is None or level.encoder is None or level.decoder is None:
            continue
        if shared_skip is None:
            diagram.arrow(f"e{i}", f"d{i}", level.skip, route="h")
        else:
            shared, enc, dec = diagram.boxes["shared"], diagram.boxes[f"e{i}"], diagram.boxes[f"d{i}"]
            diagram.line([(enc.x + enc.width, enc.cy), (shared.x, enc.cy)], level.skip)
            diagram.line([(shared.x + shared.width, dec.cy), (dec.x, dec.cy)])
    bottom_y = top + len(levels) * row + 10
    n = len(bottleneck)
    span = dec_x + column_width - enc_x
    widths = [max(len(line) for line in lines) * CHAR_WIDTH + 2 * PADDING for lines in bottleneck]
    gap = (span - sum(widths)) / max(n - 1, 1) if n > 1 else 0
    x = enc_x if n > 1 else enc_x + (span - widths[0]) / 2
    for j, lines in enumerate(bottleneck):
        diagram.box(f"b{j}", x, bottom_y, lines, "mid", width=widths[j])
        x += widths[j] + gap
    diagram.arrow(previous_enc, "b0", down if previous_enc != "image" else "", route="v" if n > 1 else "vh")
    for j in range(1, n):
        diagram.arrow(f"b{j - 1}", f"b{j}", route="h")
    diagram.arrow(f"b{n - 1}", decoder_keys[-1], route="v" if n > 1 else "hv")
    for lower, upper in itertools.pairwise([*reversed(decoder_keys), "head"]):
        diagram.arrow(lower, upper, up if upper != "head" else "", route="v")
    return diagram


# ----------------------------------------------------------------------------------------------- the figures


def utanet() -> Diagram:
    """UTANet: the ResNet-34 U-Net whose four skips come out of TA-MoSC."""
    return u_shape(
        "UTANet: ResNet-34 U-Net with TA-MoSC skips",
        ["image", "3 × H × W"],
        [
            Level(["stem e1", "Conv3×3+BN+ReLU · 64 @ H"], ["up2 → d1", "32 @ H"], "e1"),
            Level(["layer1 e2", "maxpool, 3 blocks · 64 @ H/2"], ["up3 → d2", "64 @ H/2"], "e2"),
            Level(["layer2 e3", "4 blocks · 128 @ H/4"], ["up4 → d3", "128 @ H/4"], "e3"),
            Level(["layer3 e4", "6 blocks · 256 @ H/8"], ["up5 → d4", "256 @ H/8"], "e4"),
        ],
        [["layer4 e5", "3 blocks · 512 @ H/16"]],
        ["head → logits", "1×1 32→16, BN, ReLU, 1×1"],
        up="ConvT ×2, concat, Conv3×3",
        shared_skip=["TA-MoSC", "fuse at H/2", "4 shared experts", "4 routers (top-2)", "4 dockers", "→ o1 … o4"],
    )


def tamosc() -> Diagram:
    """TA-MoSC: fusion, shared experts, one router per skip, dockers; the BEU loss on the routers."""
    d = Diagram("TA-MoSC: task-adaptive mixture of skip connections")
    rows, top = 4, 110
    shapes = ["64 @ H", "64 @ H/2", "128 @ H/4", "256 @ H/8"]
    for i, shape in enumerate(shapes):
        d.box(f"e{i}", 20, top + i * 60, [f"e{i + 1}", shape], "enc", width=110)
    d.box("fuse", 180, 20, ["resize to H/2, concat (512 ch)", "Conv1×1+BN+ReLU → F: 64 @ H/2"], "skip", width=260)
    for i in range(rows):
        d.arrow(f"e{i}", "fuse", route="h")
    height = (rows - 1) * 60 + 42
    d.box("gap", 250, top, ["GAP(F)", "one vector", "s ∈ R^64", "per image"], "skip", width=120, height=height)
    d.arrow("fuse", "gap", route="v")
    for g in range(rows):
        d.box(f"r{g}", 400, top + g * 60, [f"router {g + 1}", "softmax(s·W_g), top-2"], "skip", width=180)
        d.arrow("gap", f"r{g}", route="h")
    experts = ["4 shared experts on F", "1×1 64→128, 1×1, BN, ReLU,", "1×1 →64", "", "o_g = Σ_top-2 w · Expert(F)"]
    d.box("experts", 640, top, experts, "skip", width=250, height=height)
    d.arrow("fuse", "experts", route="hv")
    for g in range(rows):
        d.arrow(f"r{g}", "experts", "w, i", route="h", label_at=0.45)
        d.box(f"k{g}", 950, top + g * 60, [f"docker {g + 1}", "1×1+BN+ReLU, resize"], "dec", width=170)
        d.box(f"o{g}", 1170, top + g * 60, [f"o{g + 1}", shapes[g]], "dec", width=100)
        d.arrow(f"k{g}", f"o{g}", route="h")
    for g in range(rows):
        experts_box, docker = d.boxes["experts"], d.boxes[f"k{g}"]
        d.line([(experts_box.x + experts_box.width, docker.cy), (docker.x, docker.cy)])
    d.box("beu", 400, top + rows * 60 + 20, ["BEU loss", "Σ_g CV²(batch-summed router probabilities)"], "loss")
    d.arrow(f"r{rows - 1}", "beu", dashed=True, route="v")
    return d


def asc_seg() -> Diagram:
    """ASC-Seg: ASE encoder, CNSD decoder with FAC connectors and four deep-supervision heads."""
    d = u_shape(
        "ASC-Seg: ASE encoder, FAC connectors, CNSD decoder",
        ["image", "3 × 256 × 256"],
        [
            Level(
                ["ASE e1", "IPCB → PMB + DCB · 8 @ H"],
                ["FAC → CNSD d1", "8 @ H"],
                "FAC: σ(up d)·σ(e) + e",
                ["head 1: Conv1×1", "main prediction, H"],
            ),
            Level(["ASE e2", "maxpool, … · 16 @ H/2"], ["FAC → CNSD d2", "16 @ H/2"], "FAC", ["head 2", "aux, H/2"]),
            Level(["ASE e3", "maxpool, … · 24 @ H/4"], ["FAC → CNSD d3", "24 @ H/4"], "FAC", ["head 3", "aux, H/4"]),
        ],
        [["ASE e4", "maxpool, … · 32 @ H/8"], ["CNSD d4", "MSFA → DFB → SAB → CAB"]],
        ["logits = head 1", "(sigmoid in the loss)"],
    )
    d.box("s3", d.boxes["s2"].x, d.boxes["b1"].y, ["head 4", "aux, H/8"], "io")
    d.arrow("b1", "s3", route="h")
    return d


def unet() -> Diagram:
    """The milesial U-Net (transposed-convolution variant)."""
    return u_shape(
        "U-Net (milesial/Pytorch-UNet layout)",
        ["image", "C_in × H × W"],
        [
            Level(["inc x1", "DoubleConv · 64 @ H"], ["up4", "64 @ H"]),
            Level(["down1 x2", "128 @ H/2"], ["up3", "128 @ H/2"]),
            Level(["down2 x3", "256 @ H/4"], ["up2", "256 @ H/4"]),
            Level(["down3 x4", "512 @ H/8"], ["up1", "512 @ H/8"]),
        ],
        [["down4 x5", "1024 @ H/16 (512 bilinear)"]],
        ["outc → logits", "Conv1×1"],
        down="maxpool, DoubleConv",
        up="ConvT ×2, concat, DoubleConv",
    )


def resunetpp() -> Diagram:
    """ResUNet++: residual SE encoder, ASPP bridge, attention decoder, ASPP head."""
    return u_shape(
        "ResUNet++",
        ["image", "3 × 256 × 256"],
        [
            Level(["stem c1", "res + SE · 16 @ H"], ["d3", "ResBlock+SE · 32 @ H"], "attention(c1, d2), ↑2, concat"),
            Level(["ResBlock c2", "s2 + SE · 32 @ H/2"], ["d2", "64 @ H/2"], "attention, ↑2, concat"),
            Level(["ResBlock c3", "s2 + SE · 64 @ H/4"], ["d1", "128 @ H/4"], "attention, ↑2, concat"),
            Level(["ResBlock c4", "s2 + SE · 128 @ H/8"], None, None),
        ],
        [["ASPP bridge b", "rates 1, 6, 12, 18 summed · 256 @ H/8"]],
        ["ASPP(32→16) → Conv1×1", "logits"],
    )


def transunet() -> Diagram:
    """TransUNet R50-ViT-B/16: ResNetV2 stem, ViT on the 1/16 map, cascaded up-sampler."""
    return u_shape(
        "TransUNet (R50-ViT-B/16)",
        ["image", "3 × 224 × 224"],
        [
            Level(None, ["blocks.3", "16 @ 224 (no skip)"], None),
            Level(["root", "StdConv7×7 s2, GN · 64 @ 112"], ["blocks.2", "64 @ 112"]),
            Level(["block1", "3 bottlenecks · 256 @ 56"], ["blocks.1", "128 @ 56"]),
            Level(["block2", "4 bottlenecks · 512 @ 28"], ["blocks.0", "256 @ 28"]),
        ],
        [
            ["block3", "9 bottlenecks · 1024 @ 14"],
            ["ViT ×12", "768, 196 tokens"],
            ["conv_more", "768→512 @ 14"],
        ],
        ["segmentation head", "Conv3×3 16 → classes"],
        up="bilinear ×2, concat, 2×Conv3×3",
    )


def swin_unet() -> Diagram:
    """Swin-UNet tiny: Swin stages with patch merging, mirrored decoder with patch expanding."""
    return u_shape(
        "Swin-UNet (tiny)",
        ["image", "3 × 224 × 224"],
        [
            Level(None, ["final expand ×4", "96 @ 224"], None),
            Level(["patch embed + 2 Swin", "96 @ 56"], ["layers_up.3", "2 Swin · 96 @ 56"], "concat, Linear"),
            Level(["merge + 2 Swin", "192 @ 28"], ["layers_up.2", "2 Swin · 192 @ 28"], "concat, Linear"),
            Level(["merge + 2 Swin", "384 @ 14"], ["layers_up.1", "2 Swin · 384 @ 14"], "concat, Linear"),
        ],
        [["merge + 2 Swin, LN", "bottleneck 768 @ 7"], ["layers_up.0", "PatchExpand → 384 @ 14"]],
        ["Conv1×1 (no bias)", "logits @ 224"],
        up="PatchExpand",
    )


def vmunet() -> Diagram:
    """VM-UNet: VSS (SS2D) stages, additive skips."""
    return u_shape(
        "VM-UNet",
        ["image", "3 × 256 × 256"],
        [
            Level(None, ["final expand ×4", "Linear, shuffle, LN · 24 @ 256"], None),
            Level(["patch embed 4×4", "96 @ 64 (skip unused)"], ["up 3: 1 VSS", "96 @ 64"], None),
            Level(["stage 0: 2 VSS, merge", "192 @ 32"], ["up 2: 2 VSS", "192 @ 32"], "add (+)"),
            Level(["stage 1: 2 VSS, merge", "384 @ 16"], ["up 1: 2 VSS", "384 @ 16"], "add (+)"),
        ],
        [["stage 2: 2 VSS, merge", "768 @ 8"], ["stage 3: 2 VSS", "768 @ 8"], ["up 0: 2 VSS", "768 @ 8"]],
        ["Conv1×1 24 → classes", "logits @ 256"],
        up="add skip, PatchExpand",
    )


def reseg() -> Diagram:
    """ReSeg: stage 1 trains label map -> image; stage 2 aligns a student with the frozen stage-1 network."""
    d = Diagram("ReSeg: reconstruction teacher, then aligned segmentation")
    d.text(20, 22, "Stage 1: label map → image", size=14, anchor="start")
    d.box("lm1", 20, 40, ["label map", "class ids as floats"], "io")
    d.box("stage1", 220, 40, ["U-Net (same architecture)", "trained from scratch"], "mid")
    d.box("rec", 470, 40, ["output, C channels", "each regresses the image"], "io")
    d.box("l1", 720, 40, ["0.6·MSE + 0.4·L1", "against the image"], "loss")
    d.arrow("lm1", "stage1", route="h")
    d.arrow("stage1", "rec", route="h")
    d.arrow("rec", "l1", route="h", dashed=True)
    d.text(20, 142, "Stage 2: segmentation aligned with the frozen stage-1 network (teacher)", size=14, anchor="start")
    d.box("student", 20, 160, ["student: the segmentation network", "input: image"], "io", width=300)
    teacher = ["teacher: frozen stage-1 network", "input: label map of the same sample"]
    d.box("teacher", 560, 160, teacher, "io", width=300)
    pairs = [
        ("E1", ("encoder x4", "enc"), ("decoder up1", "dec"), "512 @ H/8"),
        ("E2", ("encoder x3", "enc"), ("decoder up2", "dec"), "256 @ H/4"),
        ("E3", ("encoder x2", "enc"), ("decoder up3", "dec"), "128 @ H/2"),
        ("D1", ("decoder up1", "dec"), ("encoder x4", "enc"), "512 @ H/8"),
        ("D2", ("decoder up2", "dec"), ("encoder x3", "enc"), "256 @ H/4"),
        ("D3", ("decoder up3", "dec"), ("encoder x2", "enc"), "128 @ H/2"),
        ("M", ("bridge up1", "mid"), ("bridge up1", "mid"), "512 @ H/8"),
    ]
    for i, (name, (left, left_kind), (right, right_kind), shape) in enumerate(pairs):
        y = 225 + i * 52
        d.box(f"s{i}", 70, y, [left, shape], left_kind, width=200)
        d.box(f"t{i}", 610, y, [right, shape], right_kind, width=200)
        d.arrow(f"s{i}", f"t{i}", f"{name}: MSE", dashed=True, route="h", both=True)
    lines = ["L = L_seg + 0.035 · (E1+E2+E3 + D1+D2+D3 + M) / 3", "teacher features carry no gradient"]
    d.box("loss", 200, 225 + len(pairs) * 52 + 10, lines, "loss")
    return d


def selfreg() -> Diagram:
    """SelfReg: IFD on every encoder and decoder feature, SCR of each against the final feature."""
    d = Diagram("SelfReg: IFD within each feature, SCR against the final feature")
    features = [
        ("x2", "128 @ H/2", "enc"),
        ("x3", "256 @ H/4", "enc"),
        ("x4", "512 @ H/8", "enc"),
        ("x5 (bottleneck)", "512 @ H/16", "mid"),
        ("up1", "256 @ H/8", "dec"),
        ("up2", "128 @ H/4", "dec"),
        ("up3", "64 @ H/2", "dec"),
    ]
    d.text(370, 24, "U-Net features (bilinear variant)", size=13)
    for i, (name, shape, kind) in enumerate(features):
        d.box(f"ifd{i}", 20, 40 + i * 54, ["IFD", "top half ↔ bottom half"], "loss", width=190)
        d.box(f"f{i}", 280, 40 + i * 54, [name, shape], kind, width=180)
        d.arrow(f"f{i}", f"ifd{i}", route="h")
    d.box("scr", 540, 190, ["SCR", "pool, random channels, MSE"], "loss", width=200)
    d.box("final", 800, 190, ["final = up4", "64 @ H (detached)"], "dec", width=170)
    for i in range(len(features)):
        d.arrow(f"f{i}", "scr", route="h", dashed=True)
    d.arrow("final", "scr", route="h")
    d.box("total", 520, 360, ["L = L_seg + λ1·IFD + λ2·SCR", "λ1 = λ2 = 0.015 (paper)"], "loss")
    d.arrow("scr", "total", route="v")
    return d


def mamba() -> Diagram:
    """The Mamba (v1) block around the selective scan."""
    d = Diagram("Mamba block (v1)")
    d.box("in", 20, 100, ["tokens", "B × L × d_model"], "io")
    d.box("proj", 190, 100, ["in_proj", "→ x, z (2 × d_inner)"], "enc")
    d.box("conv", 390, 40, ["causal depthwise", "Conv1d k=4, SiLU"], "enc")
    d.box("xproj", 590, 40, ["x_proj → δ, B, C", "dt_proj: δ → Δ"], "enc")
    d.box("scan", 800, 100, ["selective scan", "A = −exp(A_log), D"], "mid")
    d.box("gate", 590, 170, ["SiLU(z)"], "enc", width=150)
    d.box("out", 1000, 100, ["out_proj", "→ d_model"], "dec")
    d.arrow("in", "proj", route="h")
    d.arrow("proj", "conv", "x", route="h")
    d.arrow("conv", "xproj", route="h")
    d.arrow("xproj", "scan", route="h")
    d.arrow("proj", "gate", "z", route="h")
    d.arrow("gate", "scan", "⊙", route="h")
    d.arrow("scan", "out", route="h")
    return d


FIGURES: dict[str, Callable[[], Diagram]] = {
    "utanet": utanet,
    "tamosc": tamosc,
    "asc_seg": asc_seg,
    "reseg": reseg,
    "selfreg": selfreg,
    "resunetpp": resunetpp,
    "unet": unet,
    "transunet": transunet,
    "swin_unet": swin_unet,
    "vmunet": vmunet,
    "mamba": mamba,
}
"""Figure name -> the function drawing it (the file is ``methods/img/<name>.svg``)."""


def all_diagrams() -> dict[str, str]:
    """Draw every figure.

    Returns:
        ``{"<name>.svg": SVG text}``.
    """
    return {f"{name}.svg": draw().svg() for name, draw in FIGURES.items()}


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "site-diagrams")
    out.mkdir(parents=True, exist_ok=True)
    for name, text in all_diagrams().items():
        (out / name).write_text(text, encoding="utf-8")
        print(out / name)
