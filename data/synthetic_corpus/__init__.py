"""A deterministic generator of a small Clotho-like synthetic captioning corpus.

The embedded demo needs data that a tiny model can learn in minutes on a CPU and that can be scored without any
downloaded metric model. Every clip mixes one to three nameable sound events synthesised with numpy (beeps, a siren,
a dog barking, ...), each with attributes (pitch, loudness, getting louder or fading, speed, count) and relations
("X while Y" for overlapping events, "X then Y" for sequential ones). Every clip gets five lower-case captions that
always name the events present, so `evaluation.event_f1.event_f1` can score a caption model by the events its
captions mention.

The corpus is written in the Clotho v2.1 layout::

    <out>/clotho_captions_<split>.csv        file_name,caption_1..caption_5
    <out>/<split>/<file_name>.wav            16 kHz mono 16-bit PCM
    <out>/metadata_<split>.jsonl             events, times, attributes and captions of each clip

for the splits `development`, `validation` and `evaluation`. A clip depends only on (seed, split, index), so the
same seed gives byte-identical files whatever the number of worker processes.

Command line::

    python -m laac.data.synthetic_corpus --out DIR --seed 0 --n-train 4000 --n-val 200 --n-test 200

The parts: `catalogue` (the event catalogue, `events.json`, and which events a caption names), `layout` (a clip's
duration, events, scenes and attributes), `synthesis` (the synthesisers and the mixer), `grammar` (the captions) and
`writer` (the files, reading them back, the command line).
"""

from .catalogue import EVENT_VOCABULARY, EVENTS, EVENTS_BY_NAME, EventSpec, events_in_caption, load_catalogue
from .grammar import MAX_CAPTION_WORDS, MIN_CAPTION_WORDS, NUM_CAPTIONS, make_captions
from .layout import (
    LOUDNESS_GAIN_DB,
    LOUDNESS_JITTER_DB,
    MAX_DURATION_S,
    MIN_DURATION_S,
    SAMPLING_RATE,
    ClipSpec,
    EventInstance,
    sample_clip,
    sample_duration,
)
from .synthesis import PEAK_LIMIT, SYNTHESISERS, render_clip, render_event
from .writer import SPLITS, as_datasets, clip_file_name, clip_rng, generate_clip, main, read_metadata, write_corpus, write_split

__all__ = [
    "EVENTS", "EVENTS_BY_NAME", "EVENT_VOCABULARY", "LOUDNESS_GAIN_DB", "LOUDNESS_JITTER_DB", "MAX_CAPTION_WORDS",
    "MAX_DURATION_S", "MIN_CAPTION_WORDS", "MIN_DURATION_S", "NUM_CAPTIONS", "PEAK_LIMIT", "SAMPLING_RATE", "SPLITS",
    "SYNTHESISERS", "ClipSpec", "EventInstance", "EventSpec", "as_datasets", "clip_file_name", "clip_rng",
    "events_in_caption", "generate_clip", "load_catalogue", "main", "make_captions", "read_metadata", "render_clip",
    "render_event", "sample_clip", "sample_duration", "write_corpus", "write_split",
]  # fmt: skip
