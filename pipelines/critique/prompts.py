"""Prompt files: the defaults ship in pipelines/critique/prompts/, any other is a path.

A prompt is named by a built-in name (`teacher_system`, `teacher_user`, `student_system`)
or by a file path; the manifest records each prompt's source, sha256 and text, so a run
says exactly what was asked. Templates fill `{question}` and `{solution}` in one pass, so
braces in the values (LaTeX) or in the template are left as they are.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

BUILTIN_DIR = Path(__file__).resolve().parent / "prompts"
PLACEHOLDER = re.compile(r"\{(question|solution)\}")


@dataclass(frozen=True)
class Prompt:
    source: str  # "builtin:<name>" or the file's path
    text: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    def record(self) -> dict:
        return {"source": self.source, "sha256": self.sha256, "text": self.text}


def builtin_names() -> list[str]:
    return sorted(path.stem for path in BUILTIN_DIR.glob("*.txt"))


def load(reference: str, needs: tuple[str, ...] = ()) -> Prompt:
    """A built-in prompt by name, else a UTF-8 file; `needs`: placeholders it must hold."""
    builtin = BUILTIN_DIR / f"{reference}.txt"
    if "/" not in reference and builtin.is_file():
        path, source = builtin, f"builtin:{reference}"
    else:
        path, source = Path(reference).expanduser(), str(Path(reference).expanduser().resolve())
        if not path.is_file():
            raise FileNotFoundError(f"prompt {reference!r}: no such file, and not a built-in ({builtin_names()})")
    text = path.read_text(encoding="utf-8").rstrip("\n")
    missing = [name for name in needs if f"{{{name}}}" not in text]
    if missing:
        raise ValueError(f"prompt {source}: lacks the placeholder(s) {', '.join('{' + m + '}' for m in missing)}")
    return Prompt(source, text)


def fill(template: str, **values: str) -> str:
    return PLACEHOLDER.sub(lambda match: values[match.group(1)], template)
