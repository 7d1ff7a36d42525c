"""The IPTC digital source type vocabulary, term by term: what each one means for a verdict.

One table serves C2PA actions (detectors/c2pa_check.py), unsigned IPTC/XMP metadata
(detectors/metadata.py) and the report (docs/provenance.md prints the same table), so a term
can never mean "AI" in one place and "capture" in another.

Categories:

* ``generative_ai``  made by a model trained on sampled content (the "deepfake" case);
* ``ai_edited``      a capture or artwork with generative-AI elements composited in;
* ``synthetic``      other synthetic or algorithmic media (procedural renders, fractals,
                     composites of synthetic parts, charts): shown as a finding, never flagged
                     on its own, because nothing in it imitates a real scene with a trained model;
* ``capture``        a camera, scanner or screen capture, possibly enhanced or edited by people;
* ``human``          made by people with digital tools;
* ``unknown``        a term this table does not know (reported as it was written).

Source: https://cv.iptc.org/newscodes/digitalsourcetype/ (the definitions are paraphrased).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

GENERATIVE_AI = "generative_ai"
AI_EDITED = "ai_edited"
SYNTHETIC = "synthetic"
CAPTURE = "capture"
HUMAN = "human"
UNKNOWN = "unknown"

# The categories that declare AI: a validly signed declaration from a trusted signer confirms it.
AI_CATEGORIES = frozenset({GENERATIVE_AI, AI_EDITED})

CATEGORY_WORDS = {
    GENERATIVE_AI: "generative AI",
    AI_EDITED: "AI-edited",
    SYNTHETIC: "other synthetic or algorithmic media (a finding, never flagged alone)",
    CAPTURE: "capture",
    HUMAN: "made by people",
    UNKNOWN: "not in the IPTC vocabulary known here",
}

IPTC_PREFIX = "http://cv.iptc.org/newscodes/digitalsourcetype/"


@dataclass(frozen=True)
class SourceType:
    term: str
    category: str
    meaning: str

    @property
    def declares_ai(self) -> bool:
        return self.category in AI_CATEGORIES


def _t(term: str, category: str, meaning: str) -> tuple[str, SourceType]:
    return term, SourceType(term, category, meaning)


TABLE: dict[str, SourceType] = dict([
    _t("trainedAlgorithmicMedia", GENERATIVE_AI, "made by generative AI (a model trained on sampled content)"),
    _t("compositeWithTrainedAlgorithmicMedia", AI_EDITED,
       "a composite that includes generative-AI elements (e.g. inpainting, generative fill)"),
    _t("algorithmicMedia", SYNTHETIC,
       "made by an algorithm not based on sampled training data (a fractal, a procedural render)"),
    _t("compositeSynthetic", SYNTHETIC, "a composite that includes synthetic elements"),
    _t("dataDrivenMedia", SYNTHETIC, "a representation of data (a chart, a visualisation)"),
    _t("virtualRecording", SYNTHETIC, "a recording of a virtual scene (e.g. a video game)"),
    _t("digitalCapture", CAPTURE, "a digital camera capture"),
    _t("computationalCapture", CAPTURE, "a camera capture processed computationally"),
    _t("algorithmicallyEnhanced", CAPTURE, "a capture enhanced by an algorithm (not generative)"),
    _t("compositeCapture", CAPTURE, "a composite of captures"),
    _t("screenCapture", CAPTURE, "a screen capture"),
    _t("negativeFilm", CAPTURE, "a scan of a film negative"),
    _t("positiveFilm", CAPTURE, "a scan of a film positive"),
    _t("print", CAPTURE, "a scan of a print"),
    _t("humanEdits", CAPTURE, "a capture edited by a person"),
    _t("minorHumanEdits", CAPTURE, "a capture with minor edits by a person"),
    _t("digitalArt", HUMAN, "made by a person with digital tools"),
    _t("digitalCreation", HUMAN, "made by a person with digital tools (older name of digitalArt)"),
])

_TERM = re.compile(r"^[A-Za-z]+$")


def term_of(value: str) -> str:
    """'http://cv.iptc.org/newscodes/digitalsourcetype/algorithmicMedia' -> 'algorithmicMedia'.

    Also accepts a bare term and the IPTC URI with https or a trailing slash, as writers vary.
    """
    return value.strip().rstrip("/").rsplit("/", 1)[-1]


def lookup(value: str) -> SourceType:
    """The table entry for a term or URI; an unknown term gets category ``unknown``."""
    term = term_of(value)
    found = TABLE.get(term)
    if found is not None:
        return found
    return SourceType(term if _TERM.match(term) else value.strip(), UNKNOWN,
                      "a source type this table does not know")


def markdown_table() -> str:
    """The table as Markdown (docs/provenance.md holds this output; a test keeps them equal)."""
    rows = ["| term | category | meaning |", "| --- | --- | --- |"]
    rows += [f"| `{s.term}` | {CATEGORY_WORDS[s.category]} | {s.meaning} |" for s in TABLE.values()]
    return "\n".join(rows)
