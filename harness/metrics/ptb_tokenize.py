"""The PTB tokenisation of the COCO caption evaluation, two ways.

pycocoevalcap (``tokenizer/ptbtokenizer.py``) runs Stanford CoreNLP 3.4.1's ``PTBTokenizer
-preserveLines -lowerCase`` over the captions, one per line, and then drops the tokens in
:data:`PUNCTUATIONS`. Two details matter for equality with it: the bracket tokens come out
lower-cased (``-lrb-``) and so are *kept* (the list names ``-LRB-``), and a caption holding a
line break would shift every later line (pycocoevalcap replaces only ``\\n``; here every line
separator becomes a space, which changes nothing for captions without ``\\r``/U+2028 & co).

* :func:`ptb_tokenize_java` runs the same jar the same way (from a temporary folder: pycocoevalcap
  writes its temporary file into its own package folder, which fails on a read-only install).
* :func:`ptb_tokenize_python` is a pure-Python rendering of that lexer's rules for the text
  captions are made of: words, numbers, contractions, quotes, brackets, dashes, ellipses,
  abbreviations, symbols. It gives the jar's output on every one of the 40,460 Flickr8k captions
  (``tests/test_caption_eval.py`` checks it against the jar on those and on seeded sets). What it
  does not copy: URLs, e-mail addresses, SGML entities, fractions, and the jar's handling of
  rare Unicode symbols. METEOR has no Java-free path: its paraphrase tables and stemmer are Java.

    >>> ptb_tokenize_python(["A man's dog doesn't run (fast)."])
    ["a man 's dog does n't run -lrb- fast -rrb-"]
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from harness.core.errors import UserError

# pycocoevalcap's list, as it is (upper-case brackets included: they never match, see above)
PUNCTUATIONS = frozenset(["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-",
                          ".", "?", "!", ",", ":", "-", "--", "...", ";"])
CORENLP_JAR = "stanford-corenlp-3.4.1.jar"
_LINE_BREAKS = re.compile("\r\n|[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


class JavaUnavailableError(UserError):
    """No ``java`` on PATH (or it cannot run), or no pycocoevalcap: the Java path cannot run."""


def java_missing() -> str | None:
    """Why the Java path cannot run here (one line), or None when ``java`` runs."""
    java = shutil.which("java")
    if java is None:
        return "no `java` on PATH: install a JRE (Debian: apt-get install default-jre-headless)"
    try:
        subprocess.run([java, "-version"], capture_output=True, check=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as err:
        return f"`{java} -version` failed: {err}"
    return None


def pycocoevalcap_dir() -> Path:
    """The installed pycocoevalcap package folder (its jars live there)."""
    try:
        from pycocoevalcap.tokenizer import ptbtokenizer  # a namespace package: no __init__ to locate
    except ImportError as err:
        raise JavaUnavailableError("pycocoevalcap is not installed (pip install pycocoevalcap)") from err
    return Path(ptbtokenizer.__file__).parent.parent


def one_line(text: str) -> str:
    """A caption as one input line: every line separator becomes a space."""
    return _LINE_BREAKS.sub(" ", text)


def drop_punctuation(line: str) -> str:
    """pycocoevalcap's last step, as it is (split on single spaces, rejoin)."""
    return " ".join(w for w in line.rstrip().split(" ") if w not in PUNCTUATIONS)


def ptb_tokenize_java(texts: list[str]) -> list[str]:
    """Captions tokenised by the CoreNLP jar exactly as pycocoevalcap does, one string each.

    Empty captions stay empty (the jar keeps empty lines with -preserveLines, but the
    output is checked line for line all the same: a count mismatch is an error, never a shift).
    """
    why = java_missing()
    if why:
        raise JavaUnavailableError(why)
    jar = pycocoevalcap_dir() / "tokenizer" / CORENLP_JAR
    if not texts:
        return []
    with tempfile.TemporaryDirectory(prefix="vlbench-ptb-") as tmp:
        src = Path(tmp) / "captions.txt"
        src.write_bytes("\n".join(one_line(t) for t in texts).encode("utf-8"))
        cmd = ["java", "-cp", str(jar), "edu.stanford.nlp.process.PTBTokenizer",
               "-preserveLines", "-lowerCase", str(src)]
        proc = subprocess.run(cmd, capture_output=True, env={**os.environ, "LC_ALL": "C.UTF-8"})
    if proc.returncode != 0:
        tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no message"]
        raise RuntimeError(f"PTBTokenizer exited with {proc.returncode}: {tail[0]}")
    lines = proc.stdout.decode("utf-8").split("\n")
    if lines and lines[-1] == "" and len(lines) == len(texts) + 1:
        lines.pop()  # the jar ends its output with a newline
    if len(lines) != len(texts):
        raise RuntimeError(f"PTBTokenizer returned {len(lines)} lines for {len(texts)} captions")
    return [drop_punctuation(line) for line in lines]


# --- the pure-Python rendering --------------------------------------------------------------

# Abbreviations that keep their period (the jar's ABTITLE/ABPTIT/ABCOMP/month/day/state lists,
# checked against it): any case, and those the jar knows only capitalised ("Miss." but "miss .").
_ABBREV = re.compile(
    r"(?i:mrs?|ms|drs?|profs?|sens?|reps?|attys?|lt|col|gen|messrs|govs?|adm|rev|maj|sgt|cpl|pvt|mt|capt|ste?"
    r"|ave|pres|lieut|hon|brig|co?mdr|pfc|spc|supts?|det|mme|mmes|mlle|mlles|jr|sr|bros|blvd|rd|esq|inc|cos?"
    r"|corp|pp?tys?|ltd|plc|bancorp|dept|bhd|assn|univ|intl|sys|etc|al|seq|vs|cf|wm|jos|cie|alex|ft"
    r"|jan|feb|mar|apr|jun|jul|aug|sept?|oct|nov|dec|mon|tues?|wed|thur?s?|fri"
    r"|ala|ariz|calif|colo|conn|ct|dak|fla|ga|kans?|ky|md|mich|minn|mo|mont|neb|nev|okla|penn|tenn|va|vt|wis|wyo"
    r"|[a-z]|ph\.d|ed\.d)\.|(?:Miss|Ill|Del|Pa|Tex|Wash|Ore|Ark|La|Mass)\.")
_SPECIAL = {"cannot": "can not", "gonna": "gon na", "gotta": "got ta", "lemme": "lem me", "gimme": "gim me",
            "wanna": "wan na", "'tis": "'t is", "'twas": "'t was"}
_QUOTES = str.maketrans({"\u2018": "`", "\u2019": "'", "\u201a": "'", "\u201b": "`", "\u201c": "``", "\u201d": "''",
                         "\u201e": "``", "\u00ab": "``", "\u00bb": "''", "\u2032": "'", "\u2033": "''"})
_TOKEN = re.compile(r"""
    (?P<apos>(?i:'(?:tis|twas|em|s|re|ve|ll|d|m)(?![\w'])|'n'))   # detached 's 're 'n' ...
  | (?P<tag></?[A-Za-z][^<>\s]*>)                             # <b> </b>
  | (?P<at>[@#][A-Za-z_]\w*)                                    # @name #tag
  | (?P<acro>[A-Za-z](?:\.[A-Za-z])+\.?)                      # e.g. U.S.A. D.C.
  | (?P<num>\$?\d+(?:[.,:/]\d+)*(?![\w-])|\$?\.\d+(?!\w))      # 3.5 10,000 1/2 12:30 $5
  | (?P<word>\w+(?:[-'/_.]\w+)*\.?)                           # words, inner hyphens/dots/apostrophes
  | (?P<ell>\.\.\.+|\u2026)
  | (?P<dash>-{2,}|\u2014|\u2013|\u2012|\u2015)
  | (?P<sym>\S)
""", re.VERBOSE)
_BRACKETS = {"(": "-LRB-", ")": "-RRB-", "[": "-LSB-", "]": "-RSB-", "{": "-LCB-", "}": "-RCB-"}
_CONTRACTION = re.compile(r"(?i)^(.*[^\W\d_])(n't|'s|'m|'re|'ve|'d|'ll)$")


def _split_word(word: str) -> list[str]:
    """A lexed word -> PTB tokens: its final period unless an abbreviation, then contractions."""
    if word.endswith("."):
        if _ABBREV.fullmatch(word):
            return [word]
        return _split_word(word[:-1]) + ["."]
    if word.lower() in _SPECIAL:
        return _SPECIAL[word.lower()].split()
    m = _CONTRACTION.match(word)
    if m:
        stem, tail = m.groups()
        if tail.lower() == "n't" and stem[:-1].lower() in ("ca", "wo") and stem[-1:].lower() == "n":
            return [stem[:-1], stem[-1] + tail]  # can't -> ca n't, won't -> wo n't
        if tail.lower() == "n't" and stem[-1:].lower() == "n":
            return [stem[:-1], stem[-1] + tail]  # doesn't -> does n't
        return [stem, tail]
    if re.fullmatch(r"\w+'n'\w+", word):  # rock'n'roll
        a, _, rest = word.partition("'n'")
        return [a, "'n'", rest]
    return [word]


def _tokenize_line(text: str) -> list[str]:
    text = one_line(text).translate(_QUOTES)
    text = "".join(c for c in text if ord(c) < 0x10000)  # the jar deletes astral characters (emoji)
    out: list[str] = []
    for m in _TOKEN.finditer(text):
        kind, tok = m.lastgroup, m.group()
        prev = text[m.start() - 1] if m.start() else " "
        if kind == "sym" and tok == '"':   # opens after a space or a bracket, else closes
            out.append("``" if prev.isspace() or prev in "([{<" else "''")
        elif kind == "sym" and tok == "'":
            out.append("`" if prev.isspace() else "'")
        elif kind == "sym":
            out.append(_BRACKETS.get(tok, tok))
        elif kind == "apos":
            out += _SPECIAL.get(tok.lower(), tok).split()
        elif kind in ("ell", "dash"):
            out.append("..." if kind == "ell" else "--")
        elif kind == "num" and tok.startswith("$"):
            out += ["$", tok[1:]]
        elif kind == "word":
            out += _split_word(tok)
        else:
            out.append(tok)
    return [t.lower() for t in out]


def ptb_tokenize_python(texts: list[str]) -> list[str]:
    """The Java-free tokenizer: the jar's output (then punctuation dropped) for caption text."""
    return [drop_punctuation(" ".join(_tokenize_line(t))) for t in texts]
