"""The whitespace rules of `terraform fmt` that matter most, for machines without Terraform.

`terraform fmt` (hclwrite) re-indents every line by two spaces per open bracket, and aligns the
`=` of consecutive one-line attribute assignments and the trailing comments of consecutive lines.
This module reproduces those three rules from hclwrite's format.go so that the tests can fail
where `terraform fmt -check` in CI would; spacing between other tokens is not modelled.
Usage: `python tests/infra/hclfmt.py [--write] FILE...` lists (or fixes) files that differ.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

_OPEN = "{[("
_CLOSE = "}])"


@dataclass
class _Line:
    lead: str  # code before the assignment's "=" (or all code when not an assignment)
    assign: str | None  # from "=" to the end of the code, when the line is a one-line assignment
    comment: str | None  # trailing comment, when the line also has code
    net: int  # bracket balance of the code


def _scan(code: str) -> tuple[list[tuple[int, int]], int | None]:
    """Bracket changes (position, +1/-1) outside strings, and the start of a trailing comment."""
    changes: list[tuple[int, int]] = []
    i, n = 0, len(code)
    while i < n:
        ch = code[i]
        if ch == '"':
            i = _skip_string(code, i + 1)
            continue
        if ch == "#" or code.startswith("//", i):
            return changes, i
        if code.startswith("/*", i):
            end = code.find("*/", i + 2)
            i = n if end < 0 else end + 2
            continue
        if ch in _OPEN:
            changes.append((i, 1))
        elif ch in _CLOSE:
            changes.append((i, -1))
        i += 1
    return changes, None


def _skip_string(code: str, i: int) -> int:
    """Index just past the closing quote of a string starting at i (after the opening quote)."""
    depth = 0
    while i < len(code):
        ch = code[i]
        if ch == "\\":
            i += 2
            continue
        if depth == 0 and ch == '"':
            return i + 1
        if code.startswith("${", i) or code.startswith("%{", i):
            depth += 1
            i += 2
            continue
        if depth and ch == "}":
            depth -= 1
        elif depth and ch == '"':
            i = _skip_string(code, i + 1)
            continue
        i += 1
    return i


def _assign_index(code: str, changes: list[tuple[int, int]]) -> int | None:
    """Position of a top-level attribute "=" on this line, if the right side closes here."""
    depth_at = 0
    change_iter = iter(changes)
    pending = next(change_iter, None)
    i = 0
    while i < len(code):
        while pending is not None and pending[0] < i:
            depth_at += pending[1]
            pending = next(change_iter, None)
        ch = code[i]
        if ch == '"':
            i = _skip_string(code, i + 1)
            continue
        if ch in "#" or code.startswith("//", i):
            return None
        if ch == "=" and i > 0:
            prev, nxt = code[i - 1], code[i + 1] if i + 1 < len(code) else ""
            if prev not in "=!<>" and nxt not in "=>":
                rest = sum(delta for pos, delta in changes if pos > i)
                return i if rest == 0 else None
            return None
        i += 1
    return None


def _parse(raw: str) -> _Line:
    code = raw.strip()
    changes, comment_at = _scan(code)
    comment = None
    if comment_at is not None and comment_at > 0:
        comment = code[comment_at:].rstrip()
        code = code[:comment_at].rstrip()
    elif comment_at == 0:
        return _Line(lead=code, assign=None, comment=None, net=0)
    changes = [(pos, delta) for pos, delta in changes if pos < len(code)]
    net = sum(delta for _, delta in changes)
    eq = _assign_index(code, changes)
    if eq is None:
        return _Line(lead=code, assign=None, comment=comment, net=net)
    return _Line(lead=code[:eq].rstrip(), assign=code[eq:], comment=comment, net=net)


def format_hcl(text: str) -> str:
    """`text` with terraform fmt's indentation and alignment of "=" and trailing comments."""
    lines = [_parse(raw) for raw in text.split("\n")]
    indents: list[int] = []
    prefixes: list[str] = []
    for line in lines:
        if not line.lead and line.assign is None:
            prefixes.append("")
            continue
        if line.net > 0:
            prefixes.append("  " * len(indents))
            indents.append(line.net)
            continue
        closed = -line.net
        while closed > 0 and indents:
            if closed >= indents[-1]:
                closed -= indents.pop()
            else:
                indents[-1] -= closed
                closed = 0
        prefixes.append("  " * len(indents))

    rendered_code = _align([(line.lead, line.assign) for line in lines])
    out = []
    codes = [prefix + code for prefix, code in zip(prefixes, rendered_code, strict=True)]
    comment_cols = _comment_columns(codes, [line.comment for line in lines])
    for code, line, col in zip(codes, lines, comment_cols, strict=True):
        if line.comment is None:
            out.append(code)
        else:
            out.append(code.ljust(col) + line.comment)
    return "\n".join(out)


def _align(cells: list[tuple[str, str | None]]) -> list[str]:
    """Join lead and assign cells, aligning "=" over runs of consecutive assignments."""
    out: list[str] = []
    run: list[tuple[str, str]] = []

    def flush() -> None:
        width = max(len(lead) for lead, _ in run)
        out.extend(f"{lead.ljust(width)} {assign}" for lead, assign in run)
        run.clear()

    for lead, assign in cells:
        if assign is None:
            if run:
                flush()
            out.append(lead)
        else:
            run.append((lead, assign))
    if run:
        flush()
    return out


def _comment_columns(codes: list[str], comments: list[str | None]) -> list[int]:
    """Column of each trailing comment: one past the longest code of its run of commented lines."""
    cols = [0] * len(codes)
    start = None
    for i in range(len(codes) + 1):
        has = i < len(codes) and comments[i] is not None
        if has and start is None:
            start = i
        elif not has and start is not None:
            width = max(len(codes[j]) for j in range(start, i)) + 1
            for j in range(start, i):
                cols[j] = width
            start = None
    return cols


def main(argv: list[str]) -> int:
    write = "--write" in argv
    bad = 0
    for name in (a for a in argv if a != "--write"):
        path = Path(name)
        text = path.read_text()
        formatted = format_hcl(text)
        if formatted != text:
            bad += 1
            print(path)
            if write:
                path.write_text(formatted)
    return 1 if bad and not write else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
