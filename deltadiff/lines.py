"""Line-ending helpers shared by the make, parse and apply paths."""

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
