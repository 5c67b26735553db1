"""Line helpers shared by the make, parse and apply paths, and by a decoder reading a diff as it is written."""

from dataclasses import dataclass


def split_keepends(text: str) -> list[str]:
    """Split on '\\n' only (never on form feeds or other separators), keeping the terminators."""
    parts = text.split("\n")
    lines = [part + "\n" for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def to_lf(text: str) -> str:
    """Turn CRLF and lone CR line endings into LF."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def replaced_line(diff_text: str) -> str | None:
    """The removed line (without its `-`, trailing space stripped) that the `+` line being written at the end of
    `diff_text` replaces: the k-th `+` line after a run of `-` lines replaces the k-th of them; None when the last
    line is no `+` line or has no removed counterpart."""
    lines = diff_text.split("\n")
    if not lines[-1].startswith("+") or lines[-1].startswith("+++"):
        return None
    i, added = len(lines) - 2, 0
    while i >= 0 and lines[i].startswith("+"):
        i, added = i - 1, added + 1
    removed = []
    while i >= 0 and lines[i].startswith("-") and not lines[i].startswith("---"):
        removed.insert(0, lines[i])
        i -= 1
    return removed[added][1:].rstrip() if added < len(removed) else None


@dataclass(frozen=True)
class SourceText:
    """A file as terminator-free lines, whether its last line ends with a newline, and its newline."""

    lines: list[str]
    final_eol: bool
    newline: str

    @classmethod
    def parse(cls, text: str) -> "SourceText":
        newline = "\r\n" if "\r\n" in text else "\n"
        text = text.replace("\r\n", "\n")
        parts = text.split("\n")
        final_eol = parts[-1] == ""
        if final_eol:
            parts.pop()
        return cls(parts, final_eol or not text, newline)

    def render(self) -> str:
        body = self.newline.join(self.lines)
        return body + self.newline if self.lines and self.final_eol else body
